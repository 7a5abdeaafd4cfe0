"""The manifest's digests: remembered by size and mtime, re-read when a file changes, and a
dataset digest that does not depend on how the images are sharded."""

from __future__ import annotations

import hashlib
import os

import pytest

from shardlens.digest_cache import DigestCache
from shardlens.manifest import dataset_digest
from shardlens.records import SCHEMA_VERSION, file_digest, write_jsonl


def ingest_records(pairs: list[tuple[str, str]]) -> list[dict]:
    return [
        {"schema_version": SCHEMA_VERSION, "path": path, "image_id": image_id, "bytes": 10, "width": 4, "height": 4,
         "format": "PNG", "phash": None, "status": "ok", "error": None, "error_detail": None}
        for image_id, path in pairs
    ]  # fmt: skip


def image(n: int) -> tuple[str, str]:
    return hashlib.sha256(str(n).encode()).hexdigest(), f"img/{n:03d}.png"


def test_unchanged_files_are_not_read_again_and_a_changed_one_is(tmp_path):
    files = []
    for k in range(3):
        path = tmp_path / f"{k}.jsonl"
        path.write_text(f"line {k}\n" * (k + 1))
        files.append(path)
    store = tmp_path / "history" / "digests.sqlite"
    first = DigestCache(store)
    assert [first.digest(f) for f in files] == [file_digest(f) for f in files]
    first.close()
    assert first.read == 3 and first.reused == 0

    files[1].write_text("changed\nchanged\nchanged\n")
    os.utime(files[1], ns=(1, 1))  # a new mtime, whatever the clock's resolution
    second = DigestCache(store)
    assert [second.digest(f) for f in files] == [file_digest(f) for f in files]
    second.close()
    assert (second.read, second.reused) == (1, 2)


def test_the_dataset_digest_ignores_the_sharding_and_follows_the_content(tmp_path):
    pairs = [image(n) for n in range(12)]
    one = tmp_path / "one.jsonl"
    write_jsonl(one, "ingest", ingest_records(pairs))
    parts = []
    for k in range(3):
        part = tmp_path / f"part{k}.jsonl"
        write_jsonl(part, "ingest", ingest_records(pairs[k::3]))
        parts.append(part)
    digest = dataset_digest([one])
    assert digest == dataset_digest(parts) == dataset_digest(parts, DigestCache(tmp_path / "d.sqlite"))
    renamed = tmp_path / "renamed.jsonl"
    write_jsonl(renamed, "ingest", ingest_records([*pairs[:-1], (pairs[-1][0], "img/other.png")]))
    assert dataset_digest([renamed]) != digest
    failed = ingest_records(pairs)
    failed[0] = {**failed[0], "image_id": None, "status": "error", "error": "truncated", "width": None, "height": None, "format": None}
    broken = tmp_path / "broken.jsonl"
    write_jsonl(broken, "ingest", failed)
    rest = tmp_path / "rest.jsonl"
    write_jsonl(rest, "ingest", ingest_records(pairs[1:]))
    assert dataset_digest([broken]) == dataset_digest([rest]) != digest  # a failed file has no image_id: not part of it


def test_a_read_only_cache_learns_nothing_and_a_cut_file_is_caught(tmp_path):
    """The catalog verifies cache files against the manifest through the manifest rule's digest
    cache, read-only: files the manifest rule read are not read again, a cut one is."""
    from shardlens.catalog import CatalogError, verify_shard_files

    cache = tmp_path / "cache"
    entry = {}
    for stage in ("ingest", "gate"):
        path = cache / stage / "0000.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text(f"{stage}\n" * 40)
        sha, lines = file_digest(path)
        entry[stage] = {"file": f"{stage}/0000.jsonl", "sha256": sha, "records": lines}
    store = cache / "manifests" / "digests.sqlite"
    learnt = DigestCache(store)
    learnt.digest(cache / "ingest" / "0000.jsonl")  # the manifest rule read one of the two
    learnt.close()

    reader = DigestCache(store, read_only=True)
    verify_shard_files(cache, "0000", entry, reader)
    assert (reader.read, reader.reused) == (1, 1)
    reader.close()
    again = DigestCache(store, read_only=True)
    verify_shard_files(cache, "0000", entry, again)
    assert (again.read, again.reused) == (1, 1)  # the read-only cache kept nothing new
    again.close()
    assert sorted(p.name for p in store.parent.iterdir()) == ["digests.sqlite"]  # no -wal, -shm left

    target = cache / "ingest" / "0000.jsonl"
    st = target.stat()
    target.write_bytes(target.read_bytes()[:-12])
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # the time stamp kept: only the size tells
    with pytest.raises(CatalogError, match=r"ingest/0000\.jsonl: 38 lines.*truncated or changed after the manifest"):
        verify_shard_files(cache, "0000", entry, DigestCache(store, read_only=True))
    assert DigestCache(tmp_path / "absent.sqlite", read_only=True).conn is None
    assert not (tmp_path / "absent.sqlite").exists()
