"""The SQLite catalog: replays the cache into tables, one transaction per shard.

Each stage's table is generated from its record schema (``contracts/*.schema.json``), so a field
exists in exactly one place. Loading is idempotent and incremental: a shard whose files have the
digests already recorded in ``shard_files`` is skipped; a changed shard is replaced whole.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

from .adapters import CacheAdapter, known_adapters
from .reviews import STORE_DDL, mirror_reviews
from .records import SCHEMA_VERSION, RecordError, file_digest, load_schema, read_jsonl, schema_hash
from .stages import AGGREGATES, SHARD_STAGES

# record kind -> (table, primary key). Every stage table also has a 'shard' column.
STAGE_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ingest": ("paths", ("path",)),
    "gate": ("gate", ("shard", "image_id")),
    "ocr": ("ocr_lines", ("shard", "image_id", "line_no")),
    "detection": ("regions", ("shard", "image_id", "region_id")),
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

FIXED_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    manifest_sha256 TEXT NOT NULL UNIQUE,
    generated_at TEXT NOT NULL,
    schema_hash TEXT NOT NULL,
    dataset_digest TEXT NOT NULL,
    manifest TEXT NOT NULL
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
           MIN(path) AS path,
           COUNT(*) AS n_paths,
           MAX(bytes) AS bytes,
           MAX(width) AS width,
           MAX(height) AS height,
           MAX(format) AS format,
           CASE WHEN SUM(status = 'ok') > 0 THEN 'ok' ELSE 'error' END AS status,
           MAX(error) AS error
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
    PRIMARY KEY (item, text)
);
CREATE TABLE IF NOT EXISTS aggregate_files (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    records INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS paths_image ON paths(image_id);
CREATE INDEX IF NOT EXISTS cluster_members_cluster ON cluster_members(cluster_id);
CREATE INDEX IF NOT EXISTS regions_caption ON regions(caption);
CREATE INDEX IF NOT EXISTS ocr_text ON ocr_lines(text);
-- One row per region and per OCR line with its machine label and its cluster. Clusters group,
-- they never rename: a region's machine label is its own top candidate (caption), an OCR line's
-- is its own text; cluster_id is the group of similar items (-1: unclustered).
CREATE VIEW IF NOT EXISTS item_annotations AS
    SELECT r.image_id, 'region' AS item, r.region_id, NULL AS line_no, r.bbox, r.caption AS text,
           r.score AS score, COALESCE(m.cluster_id, -1) AS cluster_id,
           r.caption AS machine_label,
           COALESCE(m.probability, 0.0) AS confidence
    FROM regions r
    LEFT JOIN cluster_members m ON m.item = 'region' AND m.text = r.caption
    UNION ALL
    SELECT o.image_id, 'text', NULL, o.line_no, o.bbox, o.text, o.confidence,
           COALESCE(m.cluster_id, -1),
           o.text,
           COALESCE(m.probability, 0.0)
    FROM ocr_lines o
    LEFT JOIN cluster_members m ON m.item = 'text' AND m.text = o.text;
-- The same with people's reviews on top: a reviewed label always wins over the machine label.
CREATE VIEW IF NOT EXISTS final_annotations AS
    SELECT a.*, v.status AS review_status, v.label AS review_label, v.reviewer, v.reviewed_at,
           CASE WHEN v.status IN ('accepted', 'relabeled') THEN v.label
                WHEN v.status = 'rejected' THEN NULL
                ELSE a.machine_label END AS final_label
    FROM item_annotations a
    LEFT JOIN reviews v ON v.item_key = a.image_id ||
        CASE WHEN a.item = 'region' THEN '/region/' || a.region_id ELSE '/line/' || a.line_no END;
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
           CASE WHEN iv.label IS NOT NULL OR r.review_status IS NOT NULL THEN 'review' ELSE 'machine' END AS label_source,
           r.cluster_id, r.confidence
    FROM images i
    LEFT JOIN ranked r ON r.image_id = i.image_id AND r.rank = 1
    LEFT JOIN reviews iv ON iv.item_key = i.image_id || '/image' AND iv.status != 'rejected';
-- Every listed file with its image's final label (copies of one image share it) or its error.
CREATE VIEW IF NOT EXISTS path_labels AS
    SELECT p.path, p.image_id, p.status, p.error, l.final_label, l.label_source, l.cluster_id, l.confidence
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


def _set_wal(conn: sqlite3.Connection, wait_s: float = 60.0) -> None:
    """Switch to WAL. Changing the journal mode needs the database to itself, and SQLite answers
    'database is locked' at once (its busy handler is not asked) while another process opens the
    same new catalog: wait until the switch goes through, up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def connect(db_path: str | Path) -> sqlite3.Connection:
    """Open (and create) the catalog: WAL journal and a busy timeout so concurrent writers wait."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=60000")
    _set_wal(conn)
    conn.execute("PRAGMA foreign_keys=ON")
    for kind in STAGE_TABLES:
        conn.execute(table_ddl(kind))
    conn.execute(STORE_DDL)  # the catalog's copy of the review store (see reviews.py)
    _drop_old_cluster_layout(conn)
    conn.executescript(FIXED_DDL)
    return conn


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
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        conn.execute("SELECT 1 FROM images LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise CatalogError(f"{db_path}: not a shardlens catalog ({exc})") from None
    return conn


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


def verify_shard_files(cache_dir: Path, shard: str, entry: dict) -> None:
    """Raise if a cache file differs from what the manifest recorded (truncated, edited, missing)."""
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
        sha, lines = file_digest(path)
        if sha != info["sha256"] or lines != info["records"]:
            raise CatalogError(
                f"{path}: {lines} lines, sha256 {sha[:12]}; the manifest recorded {info['records']} lines, "
                f"sha256 {info['sha256'][:12]}. The file was truncated or changed after the manifest was "
                f"written (Snakemake does not notice when its time stamp is unchanged): run "
                f"`snakemake --cores all --forcerun {path}` to remake it and everything made from it"
            )


def import_cache(cache_dir: str | Path, db_path: str | Path, log=print) -> dict:
    """Load ``cache_dir`` into the SQLite catalog at ``db_path``; return counts of what changed.

    The whole import is one transaction: a reader, or the database after a crash or an error at
    any point, sees the catalog as it was before or as it is after, never a mix of the two
    caches. A second import into the same database waits for the first (busy timeout), then
    finds the shards already loaded. Caches of older versions are read through their adapter.
    """
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    adapter = SCHEMA_ADAPTERS[manifest["schema_hash"]]
    conn = connect(db_path)
    stats = {"shards_loaded": 0, "shards_unchanged": 0, "shards_removed": 0, "rows": 0}
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise CatalogError(f"{db_path}: {exc}: another import is still writing it; run this one again when it ends") from None
        _import_in_transaction(conn, cache_dir, manifest, adapter, stats, log)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()
    return stats


def _import_in_transaction(conn: sqlite3.Connection, cache_dir: Path, manifest: dict, adapter: CacheAdapter | None, stats: dict, log) -> None:
    loaded = {}
    for shard, stage, sha in conn.execute("SELECT shard, stage, sha256 FROM shard_files"):
        loaded.setdefault(shard, {})[stage] = sha
    total = len(manifest["shards"])
    for n, (shard, entry) in enumerate(sorted(manifest["shards"].items()), start=1):
        verify_shard_files(cache_dir, shard, entry)
        if loaded.get(shard) == {stage: info["sha256"] for stage, info in entry.items()}:
            stats["shards_unchanged"] += 1
            continue
        stats["rows"] += _load_shard(conn, cache_dir, shard, entry, adapter=adapter)
        stats["shards_loaded"] += 1
        if n % 100 == 0 or n == total:
            log(f"import-cache: {n}/{total} shards")
    for shard in sorted(set(loaded) - set(manifest["shards"])):
        _replace_shard(conn, shard, {}, {})
        stats["shards_removed"] += 1
    for name, info in sorted(manifest.get("aggregates", {}).items()):
        verify_shard_files(cache_dir, name, {name: info})
        known = conn.execute("SELECT sha256 FROM aggregate_files WHERE name = ?", (name,)).fetchone()
        if known is None or known[0] != info["sha256"]:
            stats["rows"] += _load_aggregate(conn, cache_dir, name, info)
    manifest_bytes = (cache_dir / "manifest.json").read_bytes()
    conn.execute(
        "INSERT OR IGNORE INTO runs (manifest_sha256, generated_at, schema_hash, dataset_digest, manifest) VALUES (?, ?, ?, ?, ?)",
        (
            hashlib.sha256(manifest_bytes).hexdigest(),
            manifest["generated_at"],
            manifest["schema_hash"],
            manifest["dataset_digest"],
            manifest_bytes.decode("utf-8"),
        ),
    )


def _load_aggregate(conn: sqlite3.Connection, cache_dir: Path, name: str, info: dict) -> int:
    """Replace an aggregate (the clusters) in one transaction."""
    if AGGREGATES.get(name) != "cluster":
        raise CatalogError(f"manifest names an aggregate {name!r} this shardlens does not know")
    clusters, members = [], []
    for record in read_jsonl(cache_dir / info["file"], "cluster"):
        clusters.append((record["cluster_id"], record["item"], record["label"], json.dumps(record["keywords"], ensure_ascii=False), record["size"]))
        for m in record["members"]:
            members.append((m["item"], m["text"], record["cluster_id"], json.dumps(m["kinds"]), m["count"], m["probability"]))
    conn.execute("SAVEPOINT aggregate")
    try:
        conn.execute("DELETE FROM clusters")
        conn.execute("DELETE FROM cluster_members")
        conn.executemany("INSERT INTO clusters VALUES (?, ?, ?, ?, ?)", clusters)
        conn.executemany("INSERT INTO cluster_members VALUES (?, ?, ?, ?, ?, ?)", members)
        conn.execute("INSERT OR REPLACE INTO aggregate_files VALUES (?, ?, ?)", (name, info["sha256"], info["records"]))
        conn.execute("RELEASE aggregate")
    except BaseException:
        conn.execute("ROLLBACK TO aggregate")
        conn.execute("RELEASE aggregate")
        raise
    return len(clusters) + len(members)


def _load_shard(conn: sqlite3.Connection, cache_dir: Path, shard: str, entry: dict, adapter: CacheAdapter | None = None) -> int:
    records: dict[str, list[dict]] = {}
    for stage, info in entry.items():
        kind = SHARD_STAGES.get(stage)
        if kind in STAGE_TABLES:
            path = cache_dir / info["file"]
            try:
                records[kind] = list(read_jsonl(path, kind) if adapter is None else adapter.read(path, kind))
            except (RecordError, KeyError, TypeError, ValueError) as exc:
                raise CatalogError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    if "ocr" in records and "detection" in records:
        link_lines_to_regions(records["ocr"], records["detection"])
    rows = {kind: [_row(kind, shard, r, record_columns(kind)) for r in recs] for kind, recs in records.items()}
    rows["region_labels"] = [
        (shard, r["image_id"], r["region_id"], rank, c["label"], c["score"], c["source"])
        for r in records.get("detection", [])
        for rank, c in enumerate(r["labels"])
    ]
    _replace_shard(conn, shard, rows, {stage: (info["sha256"], info["records"]) for stage, info in entry.items()})
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


def _replace_shard(conn: sqlite3.Connection, shard: str, rows: dict[str, list[tuple]], files: dict[str, tuple[str, int]]) -> None:
    """Swap one shard's rows in a single transaction (a savepoint inside the import's
    transaction): readers see the old shard or the new one."""
    conn.execute("SAVEPOINT shard")
    try:
        for kind, (table, _) in STAGE_TABLES.items():
            conn.execute(f"DELETE FROM {table} WHERE shard = ?", (shard,))
            if rows.get(kind):
                columns = ["shard"] + record_columns(kind)
                marks = ", ".join("?" * len(columns))
                conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows[kind])
        conn.execute("DELETE FROM region_labels WHERE shard = ?", (shard,))
        if rows.get("region_labels"):
            conn.executemany("INSERT INTO region_labels VALUES (?, ?, ?, ?, ?, ?, ?)", rows["region_labels"])
        conn.execute("DELETE FROM shard_files WHERE shard = ?", (shard,))
        conn.executemany(
            "INSERT INTO shard_files (shard, stage, sha256, records) VALUES (?, ?, ?, ?)",
            [(shard, stage, sha, n) for stage, (sha, n) in sorted(files.items())],
        )
        conn.execute("RELEASE shard")
    except BaseException:
        conn.execute("ROLLBACK TO shard")
        conn.execute("RELEASE shard")
        raise


def build_catalog(cache_dir: str | Path, db_path: str | Path, reviews_db: str | Path | None = None, log=print) -> dict:
    """Build a fresh catalog from the cache beside ``db_path`` and rename it into place, so the
    database a reader opens is always complete (the Snakemake rule uses this). People's reviews
    are copied in from the review store, which no rule rewrites."""
    db_path = Path(db_path)
    tmp = db_path.with_name(f".{db_path.name}.building")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="catalog")
    stats = import_cache(cache_dir, tmp, log=log)
    if reviews_db is not None:
        stats["reviews"] = mirror_reviews(reviews_db, tmp)
    conn = sqlite3.connect(tmp)
    summary.images = conn.execute("SELECT COUNT(*) FROM paths").fetchone()[0]
    summary.ok = conn.execute("SELECT COUNT(*) FROM paths WHERE status = 'ok'").fetchone()[0]
    summary.errors = summary.images - summary.ok
    conn.close()
    summary.records = stats["rows"]
    tmp.replace(db_path)
    log(f"catalog: {db_path} built ({stats['rows']} rows from {stats['shards_loaded']} shards)")
    summary.finish()
    return stats
