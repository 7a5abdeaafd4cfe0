"""The atomic JSONL writer, the schemas as single source of fields, and error messages."""

from __future__ import annotations

import json

import pytest

from shardlens.records import RecordError, file_digest, read_jsonl, schema_hash, schema_names, write_jsonl

GATE = {
    "schema_version": 1,
    "image_id": "a" * 64,
    "has_text": True,
    "score": 0.9,
    "decision": "ocr",
    "skip_reason": None,
    "text_regions": 2,
    "gate_version": "ppocr-det-onnx:x@123",
}


def test_round_trip_is_byte_stable(tmp_path):
    path = tmp_path / "gate" / "0001.jsonl"
    assert write_jsonl(path, "gate", [GATE, {**GATE, "image_id": "b" * 64}]) == 2
    first = path.read_bytes()
    assert [r["image_id"] for r in read_jsonl(path, "gate")] == ["a" * 64, "b" * 64]
    write_jsonl(path, "gate", [GATE, {**GATE, "image_id": "b" * 64}])
    assert path.read_bytes() == first
    assert first.count(b"\n") == 2 and b'"decision":"ocr"' in first


def test_invalid_record_names_file_record_and_field_and_keeps_old_file(tmp_path):
    path = tmp_path / "0001.jsonl"
    write_jsonl(path, "gate", [GATE])
    before = path.read_bytes()
    with pytest.raises(RecordError) as err:
        write_jsonl(path, "gate", [GATE, {**GATE, "score": 1.5}])
    assert "0001.jsonl record 2" in str(err.value) and "'score'" in str(err.value)
    assert path.read_bytes() == before  # the failed write left the old file whole
    assert [p.name for p in tmp_path.iterdir()] == ["0001.jsonl"]  # and no temp file behind


def test_cross_field_rules_are_enforced():
    from shardlens.records import validate_record

    with pytest.raises(RecordError, match="skip_reason"):
        validate_record("gate", {**GATE, "decision": "skip", "skip_reason": None})
    with pytest.raises(RecordError, match="unknown_field"):
        validate_record("gate", {**GATE, "unknown_field": 1})


def test_reader_reports_truncation_and_bad_json_with_line_numbers(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(GATE) + "\n" + json.dumps(GATE)[:40])
    with pytest.raises(RecordError, match=r"x.jsonl line 2: .*truncated"):
        list(read_jsonl(path, "gate"))
    path.write_text("{not json}\n")
    with pytest.raises(RecordError, match="line 1: not valid JSON"):
        list(read_jsonl(path, "gate"))


def test_schema_hash_is_stable_and_covers_every_schema():
    assert schema_hash() == schema_hash()
    assert {"ingest", "gate", "ocr", "manifest"} <= set(schema_names())


def test_file_digest_counts_lines(tmp_path):
    path = tmp_path / "f.jsonl"
    write_jsonl(path, "gate", [GATE] * 3)
    sha, lines = file_digest(path)
    assert lines == 3 and len(sha) == 64
