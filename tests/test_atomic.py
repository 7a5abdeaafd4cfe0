"""Atomic writes: all or nothing, and files the user's umask governs (not mkstemp's 0600)."""

from __future__ import annotations

import os

import pytest

from shardlens.atomic import atomic_open, atomic_path, staging_folder


@pytest.fixture()
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_complete_file_with_the_umask_mode(tmp_path, umask_022):
    target = tmp_path / "sub" / "out.json"
    with atomic_open(target, "w") as handle:
        handle.write("{}")
    assert target.read_text() == "{}" and (target.stat().st_mode & 0o777) == 0o644
    with atomic_path(tmp_path / "table.bin") as tmp:
        tmp.write_bytes(b"x")
    assert ((tmp_path / "table.bin").stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out.json", "sub", "table.bin"]


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"), atomic_open(target, "a"):
        pass


def test_an_error_mid_write_by_name_leaves_the_old_file_and_no_temporary(tmp_path):
    """atomic_path, for writers that want a file name (pyarrow's Parquet writer, the ONNX export):
    the half-written temporary file is removed, the old file stays."""
    target = tmp_path / "part-0.parquet"
    target.write_bytes(b"old")
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["part-0.parquet"]


def test_a_folder_is_staged_beside_its_target_and_never_left_behind(tmp_path, umask_022):
    target = tmp_path / "models" / "minilm"
    with staging_folder(target) as staging:
        assert staging.parent == target.parent and staging.name.startswith(".minilm.")
        assert (staging.stat().st_mode & 0o777) == 0o755
        (staging / "model.onnx").write_bytes(b"weights")
        os.replace(staging, target)
    assert (target / "model.onnx").read_bytes() == b"weights"
    assert [p.name for p in target.parent.iterdir()] == ["minilm"]
    with pytest.raises(RuntimeError), staging_folder(tmp_path / "models" / "other") as staging:
        (staging / "half.bin").write_bytes(b"half")
        raise RuntimeError("copy failed")
    assert [p.name for p in target.parent.iterdir()] == ["minilm"]


def test_cache_and_exports_follow_the_umask(tmp_path, umask_022):
    from shardlens.exports import write_csv
    from shardlens.records import write_jsonl

    write_jsonl(tmp_path / "cache" / "gate" / "0000.jsonl", "gate", [])
    write_csv(tmp_path / "results" / "annotations.csv", [])
    for path in (tmp_path / "cache" / "gate" / "0000.jsonl", tmp_path / "results" / "annotations.csv"):
        assert (path.stat().st_mode & 0o777) == 0o644, path
