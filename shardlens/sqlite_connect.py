"""SQLite connections, opened one way: :func:`connect_writer` for a database shardlens writes
(the catalog, the review store, the digest cache) and :func:`connect_reader` for one it only
reads (exports, reports, the dashboard, the command line's questions)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def set_wal(conn: sqlite3.Connection, wait_s: float = 60.0) -> None:
    """Switch to WAL. Changing the journal mode needs the database to itself, and SQLite answers
    'database is locked' at once (its busy handler is not asked) while another process opens the
    same new database: wait until the switch goes through, up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def connect_writer(path: str | Path, timeout: float = 60.0, wal: bool = True) -> sqlite3.Connection:
    """Open a database to write, creating it (and its folder) when missing: autocommit mode
    (``isolation_level=None``: transactions are explicit ``BEGIN`` ... ``COMMIT``), a busy timeout
    of ``timeout`` seconds so that concurrent writers wait, and (``wal``) the WAL journal, so that
    readers go on reading while it writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    if wal:
        set_wal(conn, timeout)
    return conn


def connect_reader(path: str | Path, timeout: float = 60.0, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open an existing database read-only (SQLite's ``mode=ro`` on the resolved path, which is
    %-quoted as a URI): it never creates a file and never writes; a missing file raises
    :class:`sqlite3.OperationalError`. ``check_same_thread=False`` for a connection that threads
    share (the dashboard's)."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=check_same_thread)
