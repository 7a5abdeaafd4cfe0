"""Ingest stage: hash, size and decode-check every listed file of a shard."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..images import ImageError, Limits, open_image, read_bytes
from ..jobs import JobSummary, Progress, job_logger, prefetch
from ..records import SCHEMA_VERSION, write_jsonl
from ..shards import read_listing


def ingest_file(root: Path, rel_path: str, limits: Limits) -> dict:
    """The ingest record of one file; never raises for a bad file (status 'error' + reason)."""
    record = _empty_record(rel_path)
    try:
        data = read_bytes(root / rel_path, limits)
    except ImageError as exc:
        record.update(status="error", error=exc.reason, error_detail=exc.detail)
        try:
            record["bytes"] = (root / rel_path).stat().st_size
        except OSError:
            pass
        if exc.reason == "empty_file":
            record["image_id"] = hashlib.sha256(b"").hexdigest()
        return record
    record["image_id"] = hashlib.sha256(data).hexdigest()
    record["bytes"] = len(data)
    try:
        image = open_image(data, limits, name=rel_path)
    except ImageError as exc:
        record.update(status="error", error=exc.reason, error_detail=exc.detail)
        return record
    record.update(width=image.width, height=image.height, format=image.format)
    return record


def _empty_record(rel_path: str) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "image_id": None,
        "path": rel_path,
        "bytes": None,
        "width": None,
        "height": None,
        "format": None,
        "status": "ok",
        "error": None,
        "error_detail": None,
    }


def run_shard(listing: str | Path, images_root: str | Path, output: str | Path, shard: str, limits: Limits | None = None) -> dict:
    """Write ``cache/ingest/{shard}.jsonl`` for the paths in the shard's listing file."""
    logger = job_logger("ingest")
    limits = limits or Limits()
    root = Path(images_root)
    paths = read_listing(listing)
    summary = JobSummary(shard=shard, stage="ingest", images=len(paths))
    progress = Progress(logger, f"ingest {shard}", len(paths))
    records = []
    for rel_path, record in prefetch(paths, lambda p: ingest_file(root, p, limits)):
        if isinstance(record, BaseException):  # a bug, not a bad file: still keep going
            logger.exception("ingest %s failed unexpectedly", rel_path, exc_info=record)
            detail = f"{type(record).__name__}: {record}"
            record = _empty_record(rel_path) | {"status": "error", "error": "io_error", "error_detail": detail}
        if record["status"] == "ok":
            summary.ok += 1
        else:
            summary.errors += 1
            logger.warning("%s: %s (%s)", rel_path, record["error"], record["error_detail"])
        records.append(record)
        progress.step()
    summary.records = write_jsonl(output, "ingest", records)
    return summary.finish()
