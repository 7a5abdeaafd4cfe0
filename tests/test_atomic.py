"""Atomic writes: all or nothing, and files the user's umask governs (not mkstemp's 0600)."""

from __future__ import annotations

import os

import pytest

from shardlens.atomic import atomic_open, atomic_path


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


def test_cache_and_exports_follow_the_umask(tmp_path, umask_022):
    from shardlens.records import write_jsonl
    from shardlens.exports import write_csv

    write_jsonl(tmp_path / "cache" / "gate" / "0000.jsonl", "gate", [])
    write_csv([], tmp_path / "results" / "annotations.csv")
    for path in (tmp_path / "cache" / "gate" / "0000.jsonl", tmp_path / "results" / "annotations.csv"):
        assert (path.stat().st_mode & 0o777) == 0o644, path
