"""The review store's tables: ``reviews`` (a person's verdict on one item), ``cluster_reviews`` (a
verdict on a whole cluster) and ``audits`` / ``audit_items`` (the samples drawn before a
cluster's bulk accept, :mod:`shardlens.audits`); the :class:`Review` a row holds; reading the
store and replacing the catalog's copies of its tables.

The catalog's schema and loader and the propagation use these. Writing reviews, which checks them
against the catalog and refreshes the propagation, is :mod:`shardlens.review_writer`'s, and
reading review files :mod:`shardlens.reviews`'; both import this module, never the other way.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .catalog_rules import item_key
from .sqlite_connect import connect_writer
from .table_sync import sync_table

STATUSES = ("accepted", "relabeled", "rejected")

STORE_DDL = """
CREATE TABLE IF NOT EXISTS reviews (
    item_key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    region_id INTEGER,
    line_no INTEGER,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'relabeled', 'rejected')),
    label TEXT,
    reviewer TEXT,
    reviewed_at TEXT,
    source TEXT NOT NULL,
    imported_at TEXT NOT NULL
)
"""
COLUMNS = ("item_key", "image_id", "region_id", "line_no", "status", "label", "reviewer", "reviewed_at", "source", "imported_at")

CLUSTER_STATUSES = ("accepted", "relabeled")

# A person's verdict on a whole cluster. review_key is cluster_key(item, cluster_id), what a
# propagated label names as propagated_from; a newer verdict on the same cluster replaces it.
# label: the new label of a relabeled cluster (NULL when accepted: clusters never rename);
# cluster_label: the cluster's name when it was reviewed, for people reading the table.
CLUSTER_REVIEWS_DDL = """
CREATE TABLE IF NOT EXISTS cluster_reviews (
    review_key TEXT PRIMARY KEY,
    cluster_id INTEGER NOT NULL,
    item TEXT NOT NULL CHECK (item IN ('region', 'text')),
    status TEXT NOT NULL CHECK (status IN ('accepted', 'relabeled')),
    label TEXT,
    cluster_label TEXT,
    reviewer TEXT,
    reviewed_at TEXT,
    source TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    CHECK ((status = 'relabeled') = (label IS NOT NULL))
)
"""
CLUSTER_COLUMNS = ("review_key", "cluster_id", "item", "status", "label", "cluster_label", "reviewer", "reviewed_at", "source", "imported_at")

# Audits before a cluster's bulk accept (shardlens/audits.py): one row per audit drawn, its
# sample in audit_items. An audit is 'open' until it is closed: 'failed' as soon as a sample item
# is rejected or relabeled, 'passed' when the cluster is accepted after every sample item was
# accepted. accepted / audited: the sample's verdicts counted when it closed (what precision
# estimates read); cluster_items: the cluster's items when it was drawn (the weight).
AUDITS_DDL = (
    """CREATE TABLE IF NOT EXISTS audits (
    audit_key TEXT PRIMARY KEY,
    cluster_id INTEGER NOT NULL,
    item TEXT NOT NULL CHECK (item IN ('region', 'text')),
    audit_no INTEGER NOT NULL,
    size INTEGER NOT NULL,
    cluster_items INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'passed', 'failed')),
    accepted INTEGER,
    audited INTEGER,
    reviewer TEXT,
    drawn_at TEXT NOT NULL,
    closed_at TEXT
)""",
    """CREATE TABLE IF NOT EXISTS audit_items (
    audit_key TEXT NOT NULL,
    item_key TEXT NOT NULL,
    image_id TEXT NOT NULL,
    region_id INTEGER,
    line_no INTEGER,
    PRIMARY KEY (audit_key, item_key)
)""",
)
AUDIT_COLUMNS = ("audit_key", "cluster_id", "item", "audit_no", "size", "cluster_items", "status", "accepted", "audited", "reviewer", "drawn_at", "closed_at")
AUDIT_ITEM_COLUMNS = ("audit_key", "item_key", "image_id", "region_id", "line_no")


MAX_PROBLEMS = 50  # listed one by one; the rest are counted


class ReviewError(ValueError):
    """A review file or request with problems; ``problems`` lists each one (line and reason)."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_PROBLEMS]
        listing = "\n".join(f"  - {p}" for p in shown)
        if len(problems) > len(shown):
            listing += f"\n  - ... and {len(problems) - len(shown)} more"
        super().__init__(f"{source}: {len(problems)} problem(s), nothing was imported:\n{listing}")


@dataclass(frozen=True)
class Review:
    image_id: str
    region_id: int | None
    line_no: int | None
    status: str
    label: str | None
    reviewer: str | None = None
    reviewed_at: str | None = None
    where: str = ""  # e.g. "line 7", for messages

    @property
    def item_key(self) -> str:
        return item_key(self.image_id, self.region_id, self.line_no)


def cluster_key(item: str, cluster_id: int) -> str:
    """The key of a cluster review, e.g. ``cluster/text/3``: what propagated labels name."""
    return f"cluster/{item}/{cluster_id}"


def connect_store(path: str | Path) -> sqlite3.Connection:
    conn = connect_writer(path)
    conn.execute(STORE_DDL)
    conn.execute(CLUSTER_REVIEWS_DDL)  # added to stores written before cluster reviews existed
    for statement in AUDITS_DDL:  # and audits
        conn.execute(statement)
    return conn


def _store_rows(store_db: str | Path, *tables: tuple[str, tuple[str, ...]]) -> tuple[list[tuple], ...]:
    """Every row of each (table, columns) of the store (none when the store does not exist)."""
    if not Path(store_db).exists():
        return tuple([] for _ in tables)
    store = connect_store(store_db)
    try:
        return tuple(store.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall() for table, columns in tables)
    finally:
        store.close()


def read_store(store_db: str | Path) -> tuple[list[tuple], list[tuple]]:
    """Every row of the store's ``reviews`` and ``cluster_reviews`` (none when it does not exist)."""
    return _store_rows(store_db, ("reviews", COLUMNS), ("cluster_reviews", CLUSTER_COLUMNS))


def replace_copies(catalog: sqlite3.Connection, rows: list[tuple], cluster_rows: list[tuple]) -> None:
    """Make the catalog's copies of the store's tables equal the store's (inside the caller's
    transaction), writing only the rows that differ."""
    sync_table(catalog, "reviews", rows)
    sync_table(catalog, "cluster_reviews", cluster_rows)


def read_audit_rows(store_db: str | Path) -> tuple[list[tuple], list[tuple]]:
    """Every row of the store's ``audits`` and ``audit_items`` (none when it does not exist)."""
    return _store_rows(store_db, ("audits", AUDIT_COLUMNS), ("audit_items", AUDIT_ITEM_COLUMNS))


def replace_audit_copies(catalog: sqlite3.Connection, audits: list[tuple], items: list[tuple]) -> None:
    """Make the catalog's copies of the store's audits equal the store's (inside the caller's
    transaction), writing only the rows that differ."""
    for statement in AUDITS_DDL:
        catalog.execute(statement)
    sync_table(catalog, "audits", audits)
    sync_table(catalog, "audit_items", items)
