"""The SQLite catalog: replays the cache into tables, one transaction per shard.

Each stage's table is generated from its record schema (``contracts/*.schema.json``), so a field
exists in exactly one place. Loading is idempotent and incremental: a shard whose files have the
digests already recorded in ``shard_files`` is skipped; a changed shard is replaced whole.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from .records import file_digest, load_schema, read_jsonl, schema_hash

# record kind -> (table, primary key). Every stage table also has a 'shard' column.
STAGE_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ingest": ("paths", ("path",)),
    "gate": ("gate", ("shard", "image_id")),
    "ocr": ("ocr_lines", ("shard", "image_id", "line_no")),
}

# Schema hashes this catalog can read, with the adapter that turns such a cache's records into
# the current ones (None: already current). Reading an older cache goes through its adapter.
SCHEMA_ADAPTERS: dict[str, str | None] = {schema_hash(): None}

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
CREATE INDEX IF NOT EXISTS paths_image ON paths(image_id);
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
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA busy_timeout=60000")
    conn.execute("PRAGMA foreign_keys=ON")
    for kind in STAGE_TABLES:
        conn.execute(table_ddl(kind))
    conn.executescript(FIXED_DDL)
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
    manifest = json.loads(path.read_text(encoding="utf-8"))
    found = manifest.get("schema_hash")
    if found not in SCHEMA_ADAPTERS:
        known = ", ".join(h[:12] for h in SCHEMA_ADAPTERS)
        raise CatalogError(
            f"{path}: schema_hash {str(found)[:12]} is not one this shardlens reads (it reads: {known}); "
            "re-run the workflow with this version, or import with the shardlens version that wrote it"
        )
    return manifest


def verify_shard_files(cache_dir: Path, shard: str, entry: dict) -> None:
    """Raise if a cache file differs from what the manifest recorded (truncated, edited, missing)."""
    for stage, info in entry.items():
        path = cache_dir / info["file"]
        if not path.exists():
            raise CatalogError(f"{path} is missing but listed in the manifest: re-run `snakemake` to remake it")
        sha, lines = file_digest(path)
        if sha != info["sha256"] or lines != info["records"]:
            raise CatalogError(
                f"{path}: {lines} lines, sha256 {sha[:12]}; the manifest recorded {info['records']} lines, "
                f"sha256 {info['sha256'][:12]}. The file was truncated or changed after the manifest was "
                "written: re-run `snakemake --rerun-incomplete` to remake it"
            )


def import_cache(cache_dir: str | Path, db_path: str | Path, log=print) -> dict:
    """Load ``cache_dir`` into the SQLite catalog at ``db_path``; return counts of what changed."""
    cache_dir = Path(cache_dir)
    manifest = read_manifest(cache_dir)
    conn = connect(db_path)
    stats = {"shards_loaded": 0, "shards_unchanged": 0, "shards_removed": 0, "rows": 0}
    try:
        loaded = {}
        for shard, stage, sha in conn.execute("SELECT shard, stage, sha256 FROM shard_files"):
            loaded.setdefault(shard, {})[stage] = sha
        total = len(manifest["shards"])
        for n, (shard, entry) in enumerate(sorted(manifest["shards"].items()), start=1):
            verify_shard_files(cache_dir, shard, entry)
            if loaded.get(shard) == {stage: info["sha256"] for stage, info in entry.items()}:
                stats["shards_unchanged"] += 1
                continue
            stats["rows"] += _load_shard(conn, cache_dir, shard, entry)
            stats["shards_loaded"] += 1
            if n % 100 == 0 or n == total:
                log(f"import-cache: {n}/{total} shards")
        for shard in sorted(set(loaded) - set(manifest["shards"])):
            _replace_shard(conn, shard, {}, {})
            stats["shards_removed"] += 1
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
    finally:
        conn.close()
    return stats


def _load_shard(conn: sqlite3.Connection, cache_dir: Path, shard: str, entry: dict) -> int:
    rows: dict[str, list[tuple]] = {}
    for stage, info in entry.items():
        kind = stage
        if kind not in STAGE_TABLES:
            continue
        columns = record_columns(kind)
        rows[kind] = [_row(kind, shard, r, columns) for r in read_jsonl(cache_dir / info["file"], kind)]
    _replace_shard(conn, shard, rows, {stage: (info["sha256"], info["records"]) for stage, info in entry.items()})
    return sum(len(v) for v in rows.values())


def _replace_shard(conn: sqlite3.Connection, shard: str, rows: dict[str, list[tuple]], files: dict[str, tuple[str, int]]) -> None:
    """Swap one shard's rows in a single transaction: readers see the old shard or the new one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for kind, (table, _) in STAGE_TABLES.items():
            conn.execute(f"DELETE FROM {table} WHERE shard = ?", (shard,))
            if rows.get(kind):
                columns = ["shard"] + record_columns(kind)
                marks = ", ".join("?" * len(columns))
                conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows[kind])
        conn.execute("DELETE FROM shard_files WHERE shard = ?", (shard,))
        conn.executemany(
            "INSERT INTO shard_files (shard, stage, sha256, records) VALUES (?, ?, ?, ?)",
            [(shard, stage, sha, n) for stage, (sha, n) in sorted(files.items())],
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def build_catalog(cache_dir: str | Path, db_path: str | Path, log=print) -> dict:
    """Build a fresh catalog from the cache beside ``db_path`` and rename it into place, so the
    database a reader opens is always complete (the Snakemake rule uses this)."""
    db_path = Path(db_path)
    tmp = db_path.with_name(f".{db_path.name}.building")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    stats = import_cache(cache_dir, tmp, log=log)
    tmp.replace(db_path)
    log(f"catalog: {db_path} built ({stats['rows']} rows from {stats['shards_loaded']} shards)")
    return stats
