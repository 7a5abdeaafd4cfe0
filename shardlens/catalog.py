"""The SQLite catalog: replays the cache into tables, updated in place in one transaction.

Each stage's table is generated from its record schema (``contracts/*.schema.json``), so a field
exists in exactly one place. Loading is idempotent and incremental: a shard whose files have the
digests already recorded in ``shard_files`` is skipped, a changed shard is replaced whole, a
shard gone from the plan is dropped, and the aggregates (clusters, the reviews' copy, the
propagated labels of :mod:`shardlens.propagation`, the cluster parts of the risk scores of
:mod:`shardlens.risk`, the run) follow, all in one transaction. A full rebuild (``full=True``, ``shardlens import-cache
--full``, or automatic when the catalog's layout or the cache's schema hash changed) empties
and refills the same file in that same transaction. docs/adr/0005-incremental-catalog.md says
why, and how the Snakemake rule keeps the database that Snakemake deletes before each job.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

from .adapters import CacheAdapter, known_adapters
from .catalog_rules import IMAGE_COLUMNS, final_select, image_key_sql, item_select
from .digest_cache import DIGESTS_FILE, DigestCache
from .near_duplicates import NEAR_DUPLICATES_DDL, distance_setting, refresh_near_duplicates
from .propagation import PROPAGATION_DDL, RECORDED, refresh_propagation
from .reviews import CLUSTER_COLUMNS, CLUSTER_REVIEWS_DDL, STORE_DDL, read_store, replace_copies
from .reviews import AUDIT_COLUMNS, AUDIT_ITEM_COLUMNS, AUDITS_DDL, read_audit_rows, replace_audit_copies
from .reviews import COLUMNS as REVIEW_COLUMNS
from .risk import RISK_DDL, refresh_risk, replace_shard_signals, signal_rows
from .records import SCHEMA_VERSION, RecordError, load_schema, read_jsonl, schema_hash
from .sqlite_connect import connect_reader, connect_writer
from .shard_versions import TRACKING_DDL, new_epoch, start_tracking
from .stages import AGGREGATES, SHARD_STAGES
from .table_sync import sync_table

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

# Schema hashes this catalog can read, with the adapter that turns such a cache's manifest and
# records into the current ones (None: already current). Reading an older cache goes through its
# adapter, one per version (shardlens/adapters/); any other hash is refused, listing these.
SCHEMA_ADAPTERS: dict[str, CacheAdapter | None] = {
    schema_hash(): None,
    **{adapter.schema_hash: adapter for adapter in known_adapters()},
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


# Bump when rows are derived differently from the same records (e.g. how OCR lines link to
# regions): a catalog written by another derivation is then rebuilt, like one of another layout.
CATALOG_DERIVATION = 1


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


def _row(kind: str, shard: str, record: dict, columns: list[str]) -> tuple:
    values = [shard]
    for name in columns:
        value = record.get(name)
        if isinstance(value, (list, dict)):
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        elif isinstance(value, bool):
            value = int(value)
        values.append(value)
    return tuple(values)


def read_manifest(cache_dir: Path) -> dict:
    path = cache_dir / "manifest.json"
    if not path.exists():
        raise CatalogError(f"{path} does not exist: run `snakemake` first (the manifest rule writes it)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path} is not valid JSON ({exc}): delete it and run `snakemake` to remake it") from None
    found = manifest.get("schema_hash") if isinstance(manifest, dict) else None
    if found not in SCHEMA_ADAPTERS:
        known = ", ".join(
            f"{h[:12]} ({'current, schema_version ' + str(SCHEMA_VERSION) if a is None else a.name + ': ' + a.description})"
            for h, a in SCHEMA_ADAPTERS.items()
        )
        raise CatalogError(
            f"{path}: schema_hash {str(found)[:12]} is not one this shardlens reads (it reads: {known}); "
            "re-run the workflow with this version, or import with the shardlens version that wrote it"
        )
    adapter = SCHEMA_ADAPTERS[found]
    if adapter is not None:
        try:
            manifest = adapter.upgrade_manifest(manifest)
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"{path}: schema_hash says {adapter.name}, but the manifest does not read as one ({exc})") from None
    return manifest


def verify_shard_files(cache_dir: Path, shard: str, entry: dict, digests: DigestCache | None = None) -> None:
    """Raise if a cache file differs from what the manifest recorded (truncated, edited, missing).
    ``digests``: the manifest rule's digest cache, read-only; a file with the size and mtime it
    had when the manifest rule read it is not read again (a cut or an edit changes its size or
    mtime; one that changes neither is caught when the manifest rule digests it anew)."""
    digests = digests or DigestCache(None)
    for stage, info in entry.items():
        rel = Path(info["file"])
        if rel.is_absolute() or ".." in rel.parts:
            raise CatalogError(f"{cache_dir / 'manifest.json'}: shard {shard} names {info['file']!r}, which is not inside the cache; refusing to read it")
        path = cache_dir / rel
        if not path.exists():
            raise CatalogError(
                f"{path} is missing but listed in the manifest: run `snakemake --cores all --forcerun {path}` to remake it "
                "(a plain run does not remake a deleted intermediate file while the files made from it are up to date)"
            )
        sha, lines = digests.digest(path)
        if sha != info["sha256"] or lines != info["records"]:
            raise CatalogError(
                f"{path}: {lines} lines, sha256 {sha[:12]}; the manifest recorded {info['records']} lines, "
                f"sha256 {info['sha256'][:12]}. The file was truncated or changed after the manifest was "
                f"written (Snakemake does not notice when its time stamp is unchanged): run "
                f"`snakemake --cores all --forcerun {path}` to remake it and everything made from it"
            )


def read_records(path: Path, kind: str) -> list[dict]:
    """The records of a cache file, each checked against its schema; errors name the file, the
    line and the field (:func:`records.read_jsonl`)."""
    return list(read_jsonl(path, kind))


# --- import ------------------------------------------------------------------------------------------


def _open(db_path: Path) -> sqlite3.Connection:
    """A writer's connection: WAL (readers go on reading while it writes), busy timeout, no DDL:
    the tables are created or rebuilt inside the import's transaction."""
    return connect_writer(db_path)


def _rebuild_reason(conn: sqlite3.Connection, manifest: dict, full: bool) -> tuple[str, str]:
    """(mode, why): mode is 'new' (an empty catalog), 'full' (everything is dropped and loaded
    again) or 'incremental' (only what changed)."""
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
    if names <= {"reviews", "cluster_reviews", "audits", "audit_items"}:  # nothing, or only a copy of the reviews (kept)
        return "new", "a new catalog"
    if full:
        return "full", "a full rebuild was asked for (--full)"
    try:
        last = conn.execute("SELECT schema_hash, catalog_hash FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    except sqlite3.OperationalError:
        return "full", "the catalog was written by an older shardlens (its runs table records no catalog hash)"
    if last is None:
        return "full", "the catalog records no run"
    if last[1] != catalog_hash():
        return "full", f"the catalog's layout changed (catalog hash {last[1][:12] or 'none'} -> {catalog_hash()[:12]})"
    if last[0] != manifest["schema_hash"]:
        return "full", f"the cache's schema hash changed ({last[0][:12]} -> {manifest['schema_hash'][:12]})"
    return "incremental", "the catalog is current: only changed shards are loaded"


def _kept_rows(conn: sqlite3.Connection, table: str, columns) -> list[tuple]:
    try:
        return conn.execute(f"SELECT {', '.join(columns)} FROM {table}").fetchall()
    except sqlite3.OperationalError:  # a catalog written before the table existed
        return []


def _reset(conn: sqlite3.Connection) -> None:
    """Drop every table, view and index and create the current ones (inside the transaction).
    The copies of the review store (reviews, cluster reviews) are kept: only a catalog build
    with the store (or a review import) refreshes them; so is the propagation threshold the
    catalog recorded."""
    reviews = _kept_rows(conn, "reviews", REVIEW_COLUMNS)
    cluster_reviews = _kept_rows(conn, "cluster_reviews", CLUSTER_COLUMNS)
    settings = _kept_rows(conn, "propagation_settings", ("name", "value"))
    audits, audit_items = _kept_rows(conn, "audits", AUDIT_COLUMNS), _kept_rows(conn, "audit_items", AUDIT_ITEM_COLUMNS)
    objects = conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND type IN ('view', 'table')").fetchall()
    for kind, name in sorted(objects, key=lambda o: o[0] != "view"):  # views first: they name the tables
        conn.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
    for statement in schema_statements():
        conn.execute(statement)
    new_epoch(conn)  # tracking off while the catalog loads from empty: its exports are all rewritten
    replace_copies(conn, reviews, cluster_reviews)
    replace_audit_copies(conn, audits, audit_items)
    conn.executemany("INSERT INTO propagation_settings (name, value) VALUES (?, ?)", settings)


def _copy_reviews(conn: sqlite3.Connection, store_db: str | Path) -> int:
    """Replace the catalog's copies of the review store (inside the import's transaction)."""
    rows, cluster_rows = read_store(store_db)
    replace_copies(conn, rows, cluster_rows)
    replace_audit_copies(conn, *read_audit_rows(store_db))
    return len(rows)


def import_cache(
    cache_dir: str | Path,
    db_path: str | Path,
    log=print,
    full: bool = False,
    reviews_db: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
    propagate_similarity: float | None | str = RECORDED,
    near_duplicate_distance: int | None | str = RECORDED,
) -> dict:
    """Load ``cache_dir`` into the SQLite catalog at ``db_path`` in place; return what changed.

    Only shards whose file digests differ from ``shard_files`` are read; shards gone from the
    manifest are dropped; the clusters, the reviews' copy (from ``reviews_db`` when given) and
    the run follow, and the propagated labels are computed again (:mod:`shardlens.propagation`;
    ``propagate_similarity`` is ``reviews.propagate_similarity``, recorded in the catalog; by
    default the recorded one), after the near-duplicate groups (:mod:`shardlens.near_duplicates`,
    regrouped when shards changed or ``near_duplicate_distance``, ``dedupe.max_distance``, did;
    recorded like the threshold). ``full`` (and a changed catalog layout or cache schema hash)
    empties the catalog first. All of it is one transaction: a reader, or the database after a crash
    (SIGKILL included) or an error at any point, sees the catalog as it was before or as it is
    after, never a mix. A second import into the same database waits for the first (busy
    timeout), then finds the shards already loaded. Caches of older versions are read through
    their adapter. ``progress`` is called with the stats after each shard written (tests wait
    on it).
    """
    cache_dir, db_path = Path(cache_dir), Path(db_path)
    manifest = read_manifest(cache_dir)
    adapter = SCHEMA_ADAPTERS[manifest["schema_hash"]]
    conn = _open(db_path)
    stats = {"mode": None, "reason": None, "shards_loaded": 0, "shards_unchanged": 0, "shards_removed": 0, "rows": 0, "loaded": [], "removed": []}
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise CatalogError(f"{db_path}: {exc}: another import is still writing it; run this one again when it ends") from None
        stats["mode"], stats["reason"] = _rebuild_reason(conn, manifest, full)
        if stats["mode"] != "incremental":
            if stats["mode"] == "full":
                log(f"import-cache: full rebuild of {db_path}: {stats['reason']}")
            _reset(conn)
        _import_in_transaction(conn, cache_dir, manifest, adapter, stats, log, progress)
        if reviews_db is not None:
            stats["reviews"] = _copy_reviews(conn, reviews_db)
        distance = distance_setting(conn, near_duplicate_distance, RECORDED)
        regroup = stats["mode"] != "incremental" or bool(stats["removed"])
        stats["near_duplicates"] = refresh_near_duplicates(conn, distance, stats["loaded"], full=regroup)
        stats["propagated"] = refresh_propagation(conn, propagate_similarity, changed_shards=stats["loaded"])
        stats["risk"] = refresh_risk(conn, stats["loaded"])
        start_tracking(conn, stats["loaded"])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        _checkpoint_and_close(conn)
    return stats


def _checkpoint_and_close(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it (best effort: a reader in the middle of a
    query keeps it; the next writer's checkpoint does it), so neither a commit nor a rolled-back
    import (a full disk) leaves a large -wal file behind."""
    try:
        conn.execute("PRAGMA busy_timeout=2000")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error:
        pass
    finally:
        conn.close()


def _import_in_transaction(conn: sqlite3.Connection, cache_dir: Path, manifest: dict, adapter: CacheAdapter | None, stats: dict, log, progress=None) -> None:
    digests = DigestCache(cache_dir / "manifests" / DIGESTS_FILE, read_only=True)  # the manifest rule's history folder
    try:
        _import_shards(conn, cache_dir, manifest, adapter, stats, log, progress, digests)
    finally:
        digests.close()


def _import_shards(conn: sqlite3.Connection, cache_dir: Path, manifest: dict, adapter: CacheAdapter | None, stats: dict, log, progress, digests: DigestCache) -> None:
    loaded = {}
    for shard, stage, sha in conn.execute("SELECT shard, stage, sha256 FROM shard_files"):
        loaded.setdefault(shard, {})[stage] = sha
    total = len(manifest["shards"])
    for n, (shard, entry) in enumerate(sorted(manifest["shards"].items()), start=1):
        verify_shard_files(cache_dir, shard, entry, digests)
        if loaded.get(shard) == {stage: info["sha256"] for stage, info in entry.items()}:
            stats["shards_unchanged"] += 1
            continue
        stats["rows"] += _load_shard(conn, cache_dir, shard, entry, adapter=adapter)
        stats["shards_loaded"] += 1
        stats["loaded"].append(shard)
        if progress is not None:
            progress(stats)
        if n % 100 == 0 or n == total:
            log(f"import-cache: {n}/{total} shards")
    for shard in sorted(set(loaded) - set(manifest["shards"])):
        _replace_shard(conn, shard, {}, {})
        stats["shards_removed"] += 1
        stats["removed"].append(shard)
    aggregates = manifest.get("aggregates", {})
    for name, info in sorted(aggregates.items()):
        verify_shard_files(cache_dir, name, {name: info}, digests)
        known = conn.execute("SELECT sha256 FROM aggregate_files WHERE name = ?", (name,)).fetchone()
        if known is None or known[0] != info["sha256"]:
            stats["rows"] += _load_aggregate(conn, cache_dir, name, info)
    for (name,) in conn.execute("SELECT name FROM aggregate_files").fetchall():
        if name not in aggregates:  # an aggregate the cache no longer has: as a fresh build, none
            conn.execute("DELETE FROM clusters")
            conn.execute("DELETE FROM cluster_members")
            conn.execute("DELETE FROM aggregate_files WHERE name = ?", (name,))
    manifest_bytes = (cache_dir / "manifest.json").read_bytes()
    manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    # the last run is the manifest loaded now, also when it was loaded before (a rollback to it)
    conn.execute("DELETE FROM runs WHERE manifest_sha256 = ?", (manifest_sha,))
    conn.execute(
        "INSERT INTO runs (manifest_sha256, generated_at, schema_hash, dataset_digest, manifest, catalog_hash) VALUES (?, ?, ?, ?, ?, ?)",
        (
            manifest_sha,
            manifest["generated_at"],
            manifest["schema_hash"],
            manifest["dataset_digest"],
            manifest_bytes.decode("utf-8"),
            catalog_hash(),
        ),
    )


def _load_aggregate(conn: sqlite3.Connection, cache_dir: Path, name: str, info: dict) -> int:
    """Bring an aggregate (the clusters) up to its file in one savepoint, writing only the rows
    that differ: between refits a run changes a few members of a large set. Returns the rows
    written."""
    if AGGREGATES.get(name) != "cluster":
        raise CatalogError(f"manifest names an aggregate {name!r} this shardlens does not know")
    clusters, members = {}, {}
    for record in read_records(cache_dir / info["file"], "cluster"):
        clusters[record["cluster_id"]] = (record["cluster_id"], record["item"], record["label"], json.dumps(record["keywords"], ensure_ascii=False), record["size"])
        for m in record["members"]:
            members[(m["item"], m["text"])] = (
                m["item"], m["text"], record["cluster_id"], json.dumps(m["kinds"]), m["count"], m["probability"], m["membership"], m.get("outlier_score"),
            )  # fmt: skip
    conn.execute("SAVEPOINT aggregate")
    try:
        written = sync_table(conn, "clusters", clusters.values())
        written += sync_table(conn, "cluster_members", members.values())
        conn.execute("INSERT OR REPLACE INTO aggregate_files VALUES (?, ?, ?)", (name, info["sha256"], info["records"]))
        conn.execute("RELEASE aggregate")
    except BaseException:
        _undo_savepoint(conn, "aggregate")
        raise
    return written


def _undo_savepoint(conn: sqlite3.Connection, name: str) -> None:
    """Roll back to a savepoint after an error; when SQLite has already rolled the whole
    transaction back (a full disk, an I/O error), there is none left, and the error that did
    it is the one to report."""
    if conn.in_transaction:
        try:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
        except sqlite3.OperationalError:
            pass


def _load_shard(conn: sqlite3.Connection, cache_dir: Path, shard: str, entry: dict, adapter: CacheAdapter | None = None) -> int:
    records: dict[str, list[dict]] = {}
    for stage, info in entry.items():
        kind = SHARD_STAGES.get(stage)
        if kind in STAGE_TABLES:
            path = cache_dir / info["file"]
            try:
                records[kind] = read_records(path, kind) if adapter is None else list(adapter.read(path, kind))
            except (RecordError, KeyError, TypeError, ValueError) as exc:
                raise CatalogError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    if "ocr" in records and "region" in records:
        link_lines_to_regions(records["ocr"], records["region"])
    rows = {}
    for kind, recs in records.items():
        columns = record_columns(kind)
        rows[kind] = [_row(kind, shard, r, columns) for r in recs]
    rows["region_labels"] = [
        (shard, r["image_id"], r["region_id"], rank, c["label"], c["score"], c["source"])
        for r in records.get("region", [])
        for rank, c in enumerate(r["labels"])
    ]
    # the risk signals are derived rows (shardlens/risk.py): written with the shard, not counted
    signals = signal_rows(shard, records.get("region", []), records.get("ocr", []))
    _replace_shard(conn, shard, rows, {stage: (info["sha256"], info["records"]) for stage, info in entry.items()}, signals)
    return sum(len(v) for v in rows.values())


def link_lines_to_regions(lines: list[dict], regions: list[dict]) -> None:
    """Set each OCR line's region_id to the smallest detection region holding the line's centre."""
    by_image: dict[str, list[dict]] = {}
    for region in regions:
        by_image.setdefault(region["image_id"], []).append(region)
    for line in lines:
        x0, y0, x1, y1 = line["bbox"]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        holding = [
            r for r in by_image.get(line["image_id"], [])
            if r["bbox"][0] <= cx <= r["bbox"][2] and r["bbox"][1] <= cy <= r["bbox"][3]
        ]
        if holding:
            best = min(holding, key=lambda r: ((r["bbox"][2] - r["bbox"][0]) * (r["bbox"][3] - r["bbox"][1]), r["region_id"]))
            line["region_id"] = best["region_id"]


def _replace_shard(conn: sqlite3.Connection, shard: str, rows: dict[str, list[tuple]], files: dict[str, tuple[str, int]], signals: list[tuple] = ()) -> None:
    """Swap one shard's rows in a single transaction (a savepoint inside the import's
    transaction): readers see the old shard or the new one. Only the rows that differ are
    written (:func:`sync_table`), so the change tracking marks the shards whose exported rows
    really changed; the paths go first, so an image's other rows never see it without a path."""
    conn.execute("SAVEPOINT shard")
    try:
        scope = ("shard = ?", (shard,))
        for kind, (table, _) in sorted(STAGE_TABLES.items(), key=lambda item: item[1][0] != "paths"):
            sync_table(conn, table, rows.get(kind, ()), scope)
        sync_table(conn, "region_labels", rows.get("region_labels", ()), scope)
        replace_shard_signals(conn, shard, list(signals))
        conn.execute("DELETE FROM shard_files WHERE shard = ?", (shard,))
        conn.executemany(
            "INSERT INTO shard_files (shard, stage, sha256, records) VALUES (?, ?, ?, ?)",
            [(shard, stage, sha, n) for stage, (sha, n) in sorted(files.items())],
        )
        conn.execute("RELEASE shard")
    except BaseException:
        _undo_savepoint(conn, "shard")
        raise


def keep_path(db_path: str | Path) -> Path:
    """The catalog's second name (a hard link beside it): Snakemake deletes a job's outputs
    before the job runs, which removes ``db_path``'s name but not the data this name holds."""
    db_path = Path(db_path)
    return db_path.with_name(f".{db_path.name}.keep")


def _restore_name(db_path: Path, log) -> None:
    """Give the database its name back from the second name, when Snakemake removed it (a hard
    link: instant, no copy, the same file with its -wal and -shm)."""
    keep = keep_path(db_path)
    if db_path.exists() or not keep.exists():
        return
    try:
        os.link(keep, db_path)
    except FileExistsError:  # created meanwhile: the import updates that one
        return
    log(f"catalog: {db_path} restored from {keep.name} (Snakemake removes the output before the job; updating in place)")


def _keep_second_name(db_path: Path, log) -> None:
    keep = keep_path(db_path)
    try:
        if keep.exists() and os.path.samefile(keep, db_path):
            return
        keep.unlink(missing_ok=True)
        os.link(db_path, keep)
    except OSError as exc:  # a file system without hard links: the next run rebuilds in full
        log(f"catalog: cannot keep a second name {keep} ({exc.strerror}); the next workflow run rebuilds the catalog in full")


def build_catalog(
    cache_dir: str | Path,
    db_path: str | Path,
    reviews_db: str | Path | None = None,
    log=print,
    full: bool = False,
    propagate_similarity: float | None | str = RECORDED,
    near_duplicate_distance: int | None | str = RECORDED,
) -> dict:
    """Update the catalog at ``db_path`` in place from the cache (the Snakemake rule uses this):
    :func:`import_cache` in one transaction, with people's reviews copied in from the review
    store, which no rule rewrites. Snakemake has removed the file's name before the job; the
    second name (:func:`keep_path`) gives it back, so the update is incremental and readers
    that had it open go on reading. No temporary file is made, and none survives a failure."""
    db_path = Path(db_path)
    # what older versions built beside the database and left behind when a build failed
    for leftover in (f".{db_path.name}.building", f".{db_path.name}.building-wal", f".{db_path.name}.building-shm"):
        (db_path.parent / leftover).unlink(missing_ok=True)
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="catalog")
    _restore_name(db_path, log)
    created = not db_path.exists()
    if created:  # a -wal or -shm without its database (a crash, then the files deleted by hand) would
        # be replayed into the new one: they belong to nothing now
        for orphan in (Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
            orphan.unlink(missing_ok=True)
    try:
        stats = import_cache(
            cache_dir, db_path, log=log, full=full, reviews_db=reviews_db,
            propagate_similarity=propagate_similarity, near_duplicate_distance=near_duplicate_distance,
        )  # fmt: skip
    except BaseException:
        if created:  # nothing was there before: leave nothing (the rule's job holds Snakemake's lock)
            for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
                path.unlink(missing_ok=True)
        raise
    _keep_second_name(db_path, log)
    os.utime(db_path)  # the WAL may hold the commit: the output is newer than its inputs either way
    # a writer's connection, though it only counts: closing the last one checkpoints the WAL and
    # removes the -wal and -shm files (a read-only one leaves them beside the catalog)
    conn = connect_writer(db_path, wal=False)
    summary.images = conn.execute("SELECT COUNT(*) FROM paths").fetchone()[0]
    summary.ok = conn.execute("SELECT COUNT(*) FROM paths WHERE status = 'ok'").fetchone()[0]
    summary.errors = summary.images - summary.ok
    conn.close()
    summary.records = stats["rows"]
    summary.extra = {k: stats[k] for k in ("mode", "shards_loaded", "shards_unchanged", "shards_removed")}
    log(
        f"catalog: {db_path} updated ({stats['mode']}: {stats['reason']}): {stats['rows']} rows from "
        f"{stats['shards_loaded']} shards loaded, {stats['shards_unchanged']} unchanged, {stats['shards_removed']} removed; "
        f"propagated labels: {stats['propagated']['cluster']} from reviewed clusters, {stats['propagated']['similarity']} from similar reviewed lines; "
        f"{stats['near_duplicates']} images in near-duplicate groups"
    )
    summary.finish()
    return stats
