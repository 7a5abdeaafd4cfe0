"""The catalog rule's job: :func:`build_catalog` updates the catalog in place
(:func:`shardlens.catalog.load.import_cache`), giving it back the name Snakemake removed before
the job (a second name, a hard link: docs/adr/0005-incremental-catalog.md)."""

from __future__ import annotations

import os
from pathlib import Path

from ..propagation import RECORDED
from ..sqlite_connect import connect_writer
from .load import import_cache


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
    from ..jobs import JobSummary

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
