"""Which shards' exported rows changed: the catalog's change tracking.

An export row belongs to the shard whose listing holds its image's path (the Parquet dataset's
partition, :mod:`shardlens.exports`). The rows of a shard change when its images, regions or OCR
lines are loaded again, when their cluster membership changes, and when a review or a
propagated label of one of its images changes: also when the shard itself was not loaded again
(a review, a refit, a copy of an image in another shard).

``shard_versions`` counts, per shard, the writes that touched its rows: SQLite triggers on each
table the rows are made from (``paths``, ``regions``, ``ocr_lines``, ``cluster_members``,
``reviews``, ``propagated_labels``) add one to the version of the shard that holds the first
path of the image of a changed row (a path row marks its own shard and every shard listing
its image: an added or removed copy can move the image's rows to another shard), in the
writer's own transaction. The catalog writes only rows that
differ (:mod:`shardlens.table_sync`), so a shard loaded again with the same rows marks nothing. No code path can forget to say what it
changed, and a rolled-back write leaves the versions as they were. ``region_labels`` has no
trigger: its rows are written only with their region's (one shard import).

``catalog_meta`` holds the catalog's **epoch**, a new random token each time the catalog is
emptied and loaded again (a new or a full rebuild), while the triggers are off (``tracking``),
so that loading millions of rows costs no tracking: an export that recorded another epoch
rewrites every partition. After the load the import turns tracking on.

An export records each partition's version beside the epoch and rewrites the partitions whose
version moved on since (:func:`changed_shards`).
"""

from __future__ import annotations

import sqlite3
import uuid

from .catalog_rules import first_path_sql

META_DDL = "CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
VERSIONS_DDL = "CREATE TABLE IF NOT EXISTS shard_versions (shard TEXT PRIMARY KEY, version INTEGER NOT NULL)"

_TRACKING = "(SELECT value FROM catalog_meta WHERE key = 'tracking') = 'on'"
_BUMP = "ON CONFLICT (shard) DO UPDATE SET version = version + 1"


def _image_shards(row: str) -> str:
    """Mark the shard whose listing holds the image's first path (where its rows are exported)."""
    return f"INSERT INTO shard_versions (shard, version) SELECT shard, 1 FROM paths WHERE path = {first_path_sql(f'{row}.image_id')} {_BUMP};"


def _member_shards(row: str) -> str:
    """Mark the shards of the images with a region or OCR line of the member's text."""
    return (
        f"INSERT INTO shard_versions (shard, version) SELECT p.shard, 1 FROM regions r JOIN paths p ON p.path = {first_path_sql('r.image_id')} "
        f"WHERE {row}.item = 'region' AND r.caption = {row}.text {_BUMP};"
        f"INSERT INTO shard_versions (shard, version) SELECT p.shard, 1 FROM ocr_lines o JOIN paths p ON p.path = {first_path_sql('o.image_id')} "
        f"WHERE {row}.item = 'text' AND o.text = {row}.text {_BUMP};"
    )


def _listing_shards(row: str) -> str:
    """Mark every shard that lists the image: a path added or removed can move the image's first
    path (and so its rows) from one shard to another."""
    return f"INSERT INTO shard_versions (shard, version) SELECT shard, 1 FROM paths WHERE image_id = {row}.image_id {_BUMP};"


def _own_shard(row: str) -> str:
    return f"INSERT INTO shard_versions (shard, version) VALUES ({row}.shard, 1) {_BUMP};"


def _triggers() -> list[str]:
    marks = {  # table -> how a row marks its shards
        "paths": lambda row: _own_shard(row) + _listing_shards(row),
        "regions": _image_shards,
        "ocr_lines": _image_shards,
        "reviews": _image_shards,
        "propagated_labels": _image_shards,
        "cluster_members": _member_shards,
    }
    # a member's count (how often its text occurs) is in no exported row, nor is its outlier_score
    # (it feeds the risk scores, which the dashboard reads and no export holds)
    update_when = {
        "cluster_members": "(OLD.cluster_id IS NOT NEW.cluster_id OR OLD.probability IS NOT NEW.probability OR OLD.text IS NOT NEW.text OR OLD.item IS NOT NEW.item)"
    }
    statements = []
    for table, mark in marks.items():
        statements.append(f"CREATE TRIGGER IF NOT EXISTS track_{table}_insert AFTER INSERT ON {table} WHEN {_TRACKING} BEGIN {mark('NEW')} END")
        statements.append(f"CREATE TRIGGER IF NOT EXISTS track_{table}_delete AFTER DELETE ON {table} WHEN {_TRACKING} BEGIN {mark('OLD')} END")
        when = f"{_TRACKING} AND {update_when[table]}" if table in update_when else _TRACKING
        statements.append(f"CREATE TRIGGER IF NOT EXISTS track_{table}_update AFTER UPDATE ON {table} WHEN {when} BEGIN {mark('OLD')} {mark('NEW')} END")
    return statements


TRACKING_DDL = [META_DDL, VERSIONS_DDL, *_triggers()]  # after the tables they watch

# How a catalog came to be (its epoch, how often each shard's rows were written), not what it
# holds: two catalogs of the same cache differ here and nowhere else.
TRACKING_TABLES = ("catalog_meta", "shard_versions")


def new_epoch(conn: sqlite3.Connection) -> str:
    """Start a new epoch with tracking off (the catalog is about to be loaded from empty)."""
    epoch = uuid.uuid4().hex
    conn.executemany("INSERT OR REPLACE INTO catalog_meta (key, value) VALUES (?, ?)", [("epoch", epoch), ("tracking", "off")])
    conn.execute("DELETE FROM shard_versions")
    return epoch


def start_tracking(conn: sqlite3.Connection, shards) -> None:
    """Tracking on after a load; every shard of the load gets a version (one that no export has
    recorded in this epoch)."""
    conn.executemany(f"INSERT INTO shard_versions (shard, version) VALUES (?, 1) {_BUMP}", [(s,) for s in shards])
    conn.execute("INSERT OR REPLACE INTO catalog_meta (key, value) VALUES ('tracking', 'on')")


def tracked_versions(conn: sqlite3.Connection) -> tuple[str | None, dict[str, int]]:
    """(epoch, shard -> version) of a catalog; (None, {}) for one that tracks nothing (written by
    an older shardlens, or tables made without an import): its exports rewrite every partition."""
    try:
        meta = dict(conn.execute("SELECT key, value FROM catalog_meta").fetchall())
        versions = dict(conn.execute("SELECT shard, version FROM shard_versions").fetchall())
    except sqlite3.OperationalError:
        return None, {}
    if meta.get("tracking") != "on" or not meta.get("epoch"):
        return None, {}
    return meta["epoch"], versions
