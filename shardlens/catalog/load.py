"""Loading the cache into the catalog, in place and in one transaction: a shard whose files have the
digests already recorded in ``shard_files`` is skipped, a changed shard is replaced whole (only
the rows that differ are written), a shard gone from the plan is dropped, and the aggregates
(clusters, the reviews' copy, propagated labels, near-duplicate groups, risk scores, the run)
follow. A full rebuild empties and refills the same file in that same transaction."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..adapters import CacheAdapter, known_adapters
from ..digest_cache import DIGESTS_FILE, DigestCache
from ..near_duplicates import distance_setting, refresh_near_duplicates
from ..propagation import RECORDED, refresh_propagation
from ..records import SCHEMA_VERSION, RecordError, read_jsonl, schema_hash
from ..review_store import AUDIT_COLUMNS, AUDIT_ITEM_COLUMNS, CLUSTER_COLUMNS, read_audit_rows, read_store, replace_audit_copies, replace_copies
from ..review_store import COLUMNS as REVIEW_COLUMNS
from ..risk import refresh_risk, replace_shard_signals, signal_rows
from ..shard_versions import new_epoch, start_tracking
from ..sqlite_connect import connect_writer
from ..stages import AGGREGATES, SHARD_STAGES
from ..table_sync import sync_table
from .derive import link_lines_to_regions
from .schema import STAGE_TABLES, CatalogError, catalog_hash, record_columns, schema_statements

# Schema hashes this catalog can read, with the adapter that turns such a cache's manifest and
# records into the current ones (None: already current). Reading an older cache goes through its
# adapter, one per version (shardlens/adapters/); any other hash is refused, listing these.
SCHEMA_ADAPTERS: dict[str, CacheAdapter | None] = {
    schema_hash(): None,
    **{adapter.schema_hash: adapter for adapter in known_adapters()},
}


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
            f"{h[:12]} ({'current, schema_version ' + str(SCHEMA_VERSION) if a is None else a.name + ': ' + a.description})" for h, a in SCHEMA_ADAPTERS.items()
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


def _import_shards(
    conn: sqlite3.Connection, cache_dir: Path, manifest: dict, adapter: CacheAdapter | None, stats: dict, log, progress, digests: DigestCache
) -> None:
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
        clusters[record["cluster_id"]] = (
            record["cluster_id"],
            record["item"],
            record["label"],
            json.dumps(record["keywords"], ensure_ascii=False),
            record["size"],
        )
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
