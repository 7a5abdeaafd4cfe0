"""The catalog's layout: a table per stage, generated from its record schema
(``contracts/*.schema.json``, so a field exists in exactly one place), the fixed tables, the views
(made from :mod:`shardlens.catalog_rules`) and the indexes, every one the dashboard's and the
exports' queries use; :func:`catalog_hash` fingerprints it. Opening a catalog: :func:`connect`
(to write; creates what is missing) and :func:`connect_readonly`."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from ..catalog_rules import IMAGE_COLUMNS, final_select, image_key_sql, item_select
from ..near_duplicates import NEAR_DUPLICATES_DDL
from ..propagation import PROPAGATION_DDL
from ..records import load_schema, schema_hash
from ..review_store import AUDITS_DDL, CLUSTER_REVIEWS_DDL, STORE_DDL
from ..risk import RISK_DDL
from ..shard_versions import TRACKING_DDL
from ..sqlite_connect import connect_reader, connect_writer
from .derive import CATALOG_DERIVATION

# record kind -> (table, primary key). Every stage table also has a 'shard' column. The regions
# are the regions stage's (the ontology applied); the detector's own records (kind 'detection')
# stay in the cache.
STAGE_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ingest": ("paths", ("path",)),
    "gate": ("gate", ("shard", "image_id")),
    "ocr": ("ocr_lines", ("shard", "image_id", "line_no")),
    "region": ("regions", ("shard", "image_id", "region_id")),
    "embedding": ("embeddings", ("shard", "kind", "text")),
}


_SQL_TYPES = {"integer": "INTEGER", "number": "REAL", "boolean": "INTEGER", "string": "TEXT", "array": "TEXT", "object": "TEXT"}


FIXED_DDL = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    manifest_sha256 TEXT NOT NULL UNIQUE,
    generated_at TEXT NOT NULL,
    schema_hash TEXT NOT NULL,
    dataset_digest TEXT NOT NULL,
    manifest TEXT NOT NULL,
    catalog_hash TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS shard_files (
    shard TEXT NOT NULL,
    stage TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (shard, stage)
);
CREATE VIEW IF NOT EXISTS images AS
    SELECT image_id,
           {IMAGE_COLUMNS}
    FROM paths WHERE image_id IS NOT NULL GROUP BY image_id;
CREATE TABLE IF NOT EXISTS region_labels (
    shard TEXT NOT NULL,
    image_id TEXT NOT NULL,
    region_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (shard, image_id, region_id, rank)
);
CREATE TABLE IF NOT EXISTS clusters (
    cluster_id INTEGER PRIMARY KEY,
    item TEXT,
    label TEXT NOT NULL,
    keywords TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_members (
    item TEXT NOT NULL,
    text TEXT NOT NULL,
    cluster_id INTEGER NOT NULL,
    kinds TEXT NOT NULL,
    count INTEGER NOT NULL,
    probability REAL NOT NULL,
    membership TEXT NOT NULL,
    outlier_score REAL, -- GLOSH (cluster.schema.json); NULL from a clusters file written before it
    PRIMARY KEY (item, text)
);
CREATE TABLE IF NOT EXISTS aggregate_files (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    records INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS paths_image ON paths(image_id);
CREATE INDEX IF NOT EXISTS paths_shard ON paths(shard);
CREATE INDEX IF NOT EXISTS cluster_members_cluster ON cluster_members(cluster_id);
CREATE INDEX IF NOT EXISTS regions_caption ON regions(caption);
CREATE INDEX IF NOT EXISTS ocr_text ON ocr_lines(text);
-- One row per region and per OCR line with its machine label, its cluster and its key
-- (shardlens/catalog_rules.py: clusters group, they never rename).
CREATE VIEW IF NOT EXISTS item_annotations AS
    {item_select("region")}
    UNION ALL
    {item_select("text")};
-- The same with people's reviews on top: the final label (a review wins, then a propagated label,
-- then the machine label), label_source says which (shardlens/catalog_rules.py).
CREATE VIEW IF NOT EXISTS final_annotations AS
    {final_select("item_annotations", "a")};
-- Each image with its final label: an image-level review, else its best item (regions before
-- text, by score), else NULL (nothing found).
CREATE VIEW IF NOT EXISTS image_labels AS
    WITH ranked AS (
        SELECT f.*, ROW_NUMBER() OVER (
            PARTITION BY f.image_id
            ORDER BY f.final_label IS NULL, f.item = 'text', f.score DESC, f.region_id, f.line_no
        ) AS rank
        FROM final_annotations f
    )
    SELECT i.image_id, i.path, i.status,
           COALESCE(iv.label, r.final_label) AS final_label,
           CASE WHEN iv.label IS NOT NULL THEN 'review' ELSE COALESCE(r.label_source, 'machine') END AS label_source,
           r.cluster_id, r.confidence,
           CASE WHEN iv.label IS NULL THEN r.propagated_from END AS propagated_from
    FROM images i
    LEFT JOIN ranked r ON r.image_id = i.image_id AND r.rank = 1
    LEFT JOIN reviews iv ON iv.item_key = {image_key_sql("i")} AND iv.status != 'rejected';
-- Every listed file with its image's final label (copies of one image share it) or its error.
CREATE VIEW IF NOT EXISTS path_labels AS
    SELECT p.path, p.image_id, p.status, p.error, l.final_label, l.label_source, l.cluster_id, l.confidence, l.propagated_from
    FROM paths p LEFT JOIN image_labels l ON l.image_id = p.image_id;
CREATE INDEX IF NOT EXISTS regions_image ON regions(image_id);
CREATE INDEX IF NOT EXISTS region_labels_label ON region_labels(label);
CREATE INDEX IF NOT EXISTS ocr_image ON ocr_lines(image_id);
"""


class CatalogError(RuntimeError):
    """The cache cannot be loaded as it is; the message says which file and what to do."""


def _column_type(spec: dict) -> str:
    kinds = spec.get("type")
    if isinstance(kinds, list):
        kinds = next((k for k in kinds if k != "null"), "string")
    if kinds is None:
        values = [v for v in spec.get("enum", [spec.get("const")]) if v is not None]
        kinds = "integer" if values and all(isinstance(v, int) for v in values) else "string"
    return _SQL_TYPES[kinds]


def record_columns(kind: str) -> list[str]:
    """Columns of a stage table: the schema's properties (minus schema_version), in schema order."""
    return [name for name in load_schema(kind)["properties"] if name != "schema_version"]


def table_ddl(kind: str) -> str:
    table, key = STAGE_TABLES[kind]
    props = load_schema(kind)["properties"]
    columns = ["shard TEXT NOT NULL"] + [f"{name} {_column_type(props[name])}" for name in record_columns(kind)]
    return f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)}, PRIMARY KEY ({', '.join(key)}))"


def connect(db_path: str | Path) -> sqlite3.Connection:
    """Open (and create) the catalog: WAL journal and a busy timeout so concurrent writers wait."""
    conn = connect_writer(db_path)
    conn.execute("PRAGMA foreign_keys=ON")
    for kind in STAGE_TABLES:
        conn.execute(table_ddl(kind))
    conn.execute(STORE_DDL)  # the catalog's copy of the review store (see reviews.py)
    conn.execute(CLUSTER_REVIEWS_DDL)
    for statement in PROPAGATION_DDL:  # derived: shardlens/propagation.py
        conn.execute(statement)
    for statement in NEAR_DUPLICATES_DDL:  # derived: shardlens/near_duplicates.py
        conn.execute(statement)
    _drop_old_cluster_layout(conn)
    conn.executescript(FIXED_DDL)
    for statement in RISK_DDL:  # derived: shardlens/risk.py
        conn.execute(statement)
    for statement in AUDITS_DDL:  # the catalog's copy of the store's audits
        conn.execute(statement)
    for statement in TRACKING_DDL:  # last: its triggers watch the tables above
        conn.execute(statement)
    return conn


def _split_sql(script: str) -> list[str]:
    """The statements of ``script``, one by one (``executescript`` would COMMIT the open
    transaction first, so the DDL of a rebuild runs statement by statement inside it)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(l.strip().startswith("--") or not l.strip() for l in buffer.splitlines()):
        raise ValueError(f"incomplete SQL statement: {buffer[:80]!r}")
    return statements


def schema_statements() -> list[str]:
    """Every statement that creates the catalog's tables, views and indexes, in order."""
    return (
        [table_ddl(kind) for kind in STAGE_TABLES]
        + [STORE_DDL.strip(), CLUSTER_REVIEWS_DDL.strip(), *PROPAGATION_DDL, *NEAR_DUPLICATES_DDL]
        + _split_sql(FIXED_DDL)
        + list(RISK_DDL)
        + list(AUDITS_DDL)
        + TRACKING_DDL
    )


@cache
def catalog_hash() -> str:
    """sha256 of the catalog's layout (every CREATE statement), the record schemas and the row
    derivation: a catalog whose last run recorded another hash is rebuilt in full."""
    digest = hashlib.sha256(f"derivation {CATALOG_DERIVATION}\0schemas {schema_hash()}\0".encode())
    for statement in schema_statements():
        digest.update(statement.encode() + b"\0")
    return digest.hexdigest()


def _drop_old_cluster_layout(conn: sqlite3.Connection) -> None:
    """A catalog written before clusters kept their item group (region labels and OCR texts
    apart) has cluster tables without ``item`` and views that renamed items by their cluster.
    Both are derived: drop them, so FIXED_DDL recreates them and the next load refills them."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(cluster_members)")}
    if not columns or "item" in columns:
        return
    for view in ("path_labels", "image_labels", "final_annotations", "item_annotations"):
        conn.execute(f"DROP VIEW IF EXISTS {view}")
    conn.execute("DROP TABLE IF EXISTS cluster_members")
    conn.execute("DROP TABLE IF EXISTS clusters")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'aggregate_files'").fetchone():
        conn.execute("DELETE FROM aggregate_files")  # so the clusters load again


def connect_readonly(db_path: str | Path) -> sqlite3.Connection:
    """Open an existing catalog for reading: never creates a file; CatalogError (one line) when
    the file is missing or is no shardlens catalog."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise CatalogError(f"{db_path}: no such catalog (the workflow builds it; or `shardlens import-cache CACHE {db_path}`)")
    conn = connect_reader(db_path)
    try:
        conn.execute("SELECT 1 FROM images LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CatalogError(f"{db_path}: not a shardlens catalog ({exc})") from None
    return conn


def fetch_rows(cursor: sqlite3.Cursor, size: int = 5000) -> Iterator:
    """The rows of an executed query, fetched ``size`` at a time: an export of millions of rows
    holds one chunk, never the whole result."""
    while batch := cursor.fetchmany(size):
        yield from batch
