"""The one way shardlens opens SQLite: writers create, wait and journal in WAL; readers never
write and never create a file, whatever characters the path holds."""

from __future__ import annotations

import sqlite3

import pytest

from shardlens.sqlite_connect import connect_reader, connect_writer


def test_writer_creates_its_folder_in_wal_with_autocommit(tmp_path):
    path = tmp_path / "new folder" / "db.sqlite"
    conn = connect_writer(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 60000
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1)")  # autocommit: visible to another connection at once
    assert sqlite3.connect(path).execute("SELECT x FROM t").fetchall() == [(1,)]
    conn.close()
    other = connect_writer(tmp_path / "rollback.sqlite", timeout=5, wal=False)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert other.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


@pytest.mark.parametrize("name", ["plain.sqlite", "50% off?.sqlite", "a#b .sqlite"])
def test_reader_reads_and_never_writes_whatever_the_name(tmp_path, name):
    path = tmp_path / name
    writer = connect_writer(path)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("INSERT INTO t VALUES ('kept')")
    reader = connect_reader(path)
    assert reader.execute("SELECT x FROM t").fetchall() == [("kept",)]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.execute("INSERT INTO t VALUES ('no')")
    reader.close()
    writer.close()


def test_reader_of_a_missing_file_creates_nothing(tmp_path):
    with pytest.raises(sqlite3.OperationalError):
        connect_reader(tmp_path / "missing.sqlite")
    assert list(tmp_path.iterdir()) == []
