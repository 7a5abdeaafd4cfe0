"""Make a SQLite table hold exactly a given set of rows, writing only the rows that differ.

Derived tables that a run changes a little (cluster members between refits, the propagated
labels, the catalog's copy of the review store) are brought up to date this way rather than
emptied and filled again: readers, indexes and the change tracking of the catalog
(:mod:`shardlens.shard_versions`, whose triggers mark the shards whose exported rows a write
touches) see only what really changed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable


def table_columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """(all columns in table order, primary-key columns in key order) of ``table``."""
    info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    if not info:
        raise ValueError(f"no table {table!r}")
    columns = [row[1] for row in info]
    key = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    return columns, key or columns


def sync_table(conn: sqlite3.Connection, table: str, rows: Iterable[tuple], scope: tuple[str, tuple] | None = None) -> int:
    """Make ``table`` hold exactly ``rows`` (full rows in the table's column order), inside the
    caller's transaction: rows whose key is gone are deleted, new keys inserted, rows whose other
    values differ updated in place (an UPDATE, never a delete and insert, so an update trigger
    sees the old and the new values). ``scope`` (a WHERE clause and its parameters, e.g.
    ``("shard = ?", ("0007",))``) limits this to the rows it selects: the others are left as
    they are. Returns how many rows were written."""
    columns, key = table_columns(conn, table)
    at = [columns.index(name) for name in key]
    wanted = {tuple(row[i] for i in at): tuple(row) for row in rows}
    quoted = ", ".join(f'"{c}"' for c in columns)
    clause, params = scope if scope is not None else ("1", ())
    existing = {tuple(row[i] for i in at): row for row in conn.execute(f'SELECT {quoted} FROM "{table}" WHERE {clause}', params)}
    where = " AND ".join(f'"{name}" = ?' for name in key)
    gone = [k for k in existing if k not in wanted]
    new = [row for k, row in wanted.items() if k not in existing]
    changed = [row for k, row in wanted.items() if k in existing and existing[k] != row]
    conn.executemany(f'DELETE FROM "{table}" WHERE {where}', gone)
    if new:
        conn.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({", ".join("?" * len(columns))})', new)
    others = [i for i, name in enumerate(columns) if name not in key]
    if changed and others:
        assignments = ", ".join(f'"{columns[i]}" = ?' for i in others)
        conn.executemany(
            f'UPDATE "{table}" SET {assignments} WHERE {where}',
            [tuple(row[i] for i in others) + tuple(row[i] for i in at) for row in changed],
        )
    return len(gone) + len(new) + len(changed)
