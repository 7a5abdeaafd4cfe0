"""Ingest stage: hash, size and decode-check every listed file of a shard.

The decoded image also gives its perceptual hash (``phash``, :mod:`shardlens.near_duplicates`),
computed here where the pixels are already in memory: a function of the file alone.

Every file gets a record: ``status`` ok, or error with a reason code. Nothing a file contains can
stop its shard: each file is read and decoded in a worker process (:class:`IsolatedIngest`, on
:mod:`shardlens.isolated_worker`) that is given ``limits.decode_timeout_s`` per file, so a decoder
that hangs or crashes costs that file (``decode_timeout`` / ``corrupt``) and a fresh worker takes
the next one.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ..images.decoding import ImageError, Limits, open_image, read_bytes, resolve_inside
from ..isolated_worker import IsolatedWorker
from ..jobs import JobSummary, Progress, job_logger, prefetch
from ..near_duplicates import perceptual_hash, require_hasher
from ..options import IngestOptions
from ..records import SCHEMA_VERSION, write_jsonl
from ..shards import read_listing


def ingest_file(root: Path, rel_path: str, options: IngestOptions, *, on_read: Callable[[str, int], None] | None = None) -> dict:
    """The ingest record of one file under ``options`` (its limits, and whether a path may
    resolve outside ``root``); never raises for a bad file (status 'error' + reason).

    ``on_read(image_id, n_bytes)``, if given, is called once the bytes are read and hashed,
    before decoding (the worker reports it so a decode timeout still knows the image id).
    """
    limits = options.limits
    record = _empty_record(rel_path)
    try:
        path = resolve_inside(root, rel_path, options.allow_outside_root)
    except ImageError as exc:  # nothing is read from a path outside the root, not even its size
        return record | {"status": "error", "error": exc.reason, "error_detail": _relative_detail(exc.detail, root)}
    try:
        data = read_bytes(path, limits)
    except ImageError as exc:
        record.update(status="error", error=exc.reason, error_detail=_relative_detail(exc.detail, root))
        try:
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode):  # a pipe's or device's "size" means nothing
                record["bytes"] = st.st_size
        except OSError:
            pass
        if exc.reason == "empty_file":
            record["image_id"] = hashlib.sha256(b"").hexdigest()
        return record
    record["image_id"] = hashlib.sha256(data).hexdigest()
    record["bytes"] = len(data)
    if on_read is not None:
        on_read(record["image_id"], record["bytes"])
    try:
        image = open_image(data, limits, name=rel_path)
    except ImageError as exc:
        record.update(status="error", error=exc.reason, error_detail=exc.detail)
        return record
    record.update(width=image.width, height=image.height, format=image.format, phash=perceptual_hash(image))
    return record


def _relative_detail(detail: str, root: Path) -> str:
    """The detail with the images root left out, so a record does not depend on where the
    images are mounted (the same images give the same cache on every machine)."""
    for prefix in {os.fspath(root), os.path.realpath(root)}:
        detail = detail.replace(prefix.rstrip(os.sep) + os.sep, "").replace(prefix, "<images root>")
    return detail


def _empty_record(rel_path: str) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "image_id": None,
        "path": rel_path,
        "bytes": None,
        "width": None,
        "height": None,
        "format": None,
        "phash": None,
        "status": "ok",
        "error": None,
        "error_detail": None,
    }


def _ingest_reporting_read(root: Path, options: IngestOptions, rel_path: str, report) -> dict:
    """:func:`ingest_file` in the worker: reports ``(image_id, bytes)`` once the file is read."""
    return ingest_file(root, rel_path, options, on_read=report)


class IsolatedIngest:
    """Ingest files one by one in a worker process (:class:`~shardlens.isolated_worker.IsolatedWorker`),
    each within ``options.limits.decode_timeout_s`` (which must be set).

    The common case costs one fork per shard job and two small pipe messages per file. A file
    whose read and decode take longer gets ``decode_timeout``; a worker that dies (a decoder
    crash) gets ``corrupt``; either way the worker is replaced and the shard goes on.
    """

    def __init__(self, root: Path, options: IngestOptions):
        self.root, self.options = Path(root), options
        self._worker = IsolatedWorker(functools.partial(_ingest_reporting_read, self.root, options))

    @property
    def restarts(self) -> int:
        return self._worker.restarts

    def __call__(self, rel_path: str) -> dict:
        timeout = float(self.options.limits.decode_timeout_s)
        record = _empty_record(rel_path)

        def read(image_id: str, n_bytes: int) -> None:
            record["image_id"], record["bytes"] = image_id, n_bytes

        outcome, value = self._worker.run(rel_path, timeout, on_report=read)
        if outcome == "crashed":
            return record | {"status": "error", "error": "corrupt", "error_detail": f"the decoder crashed ({value})"}
        if outcome == "timeout":
            return record | {
                "status": "error",
                "error": "decode_timeout",
                "error_detail": f"reading and decoding took longer than {timeout:g} s (limits.decode_timeout_s)",
            }
        if outcome == "bug":
            return record | {"status": "error", "error": "io_error", "error_detail": value}
        return value

    def close(self) -> None:
        self._worker.close()

    def __enter__(self) -> IsolatedIngest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_shard(
    listing: str | Path,
    images_root: str | Path,
    output: str | Path,
    shard: str,
    limits: Limits,
    allow_outside_root: bool,
) -> dict:
    """:func:`run` with the options of the rule's params, as scripts/ingest.py passes them
    (``limits`` built from config ``limits``, and ``listing.allow_outside_root``)."""
    return run(listing, images_root, output, shard, IngestOptions(limits=limits, allow_outside_root=allow_outside_root))


def run(listing: str | Path, images_root: str | Path, output: str | Path, shard: str, options: IngestOptions) -> dict:
    """Write ``cache/ingest/{shard}.jsonl`` for the paths in the shard's listing file.

    The job's summary line counts ``ok`` (decoded), ``errors`` (status error) and ``skipped``
    (paths whose bytes are identical to an earlier path of the shard: later stages process that
    content once).
    """
    logger = job_logger("ingest")
    require_hasher()  # before any file: a missing library is the job's error, not each file's
    root = Path(images_root)
    paths = read_listing(listing)
    summary = JobSummary(shard=shard, stage="ingest", images=len(paths))
    progress = Progress(logger, f"ingest {shard}", len(paths))
    records = []
    seen_ok: set[str] = set()
    unhashed = 0  # decoded, but no perceptual hash (a mode it cannot be computed from, e.g. CIELab)
    if options.limits.decode_timeout_s:
        worker = IsolatedIngest(root, options)
        results = ((p, _safe(worker, p)) for p in paths)
    else:  # decode_timeout_s: null decodes in this process, unguarded
        worker = None
        results = prefetch(paths, lambda p: ingest_file(root, p, options))
    try:
        for rel_path, record in results:
            if isinstance(record, BaseException):  # a bug, not a bad file: still keep going
                logger.error("ingest %s failed unexpectedly: %s", rel_path, record)
                detail = f"{type(record).__name__}: {record}"
                record = _empty_record(rel_path) | {"status": "error", "error": "io_error", "error_detail": detail}
            if record["status"] == "ok":
                if record["phash"] is None:
                    unhashed += 1
                if record["image_id"] in seen_ok:
                    summary.skipped += 1
                else:
                    summary.ok += 1
                    seen_ok.add(record["image_id"])
            else:
                summary.errors += 1
                logger.warning("%r: %s (%s)", rel_path, record["error"], record["error_detail"])
            records.append(record)
            progress.step()
    finally:
        if worker is not None:
            worker.close()
    summary.records = write_jsonl(output, "ingest", records)
    extra = {"worker_restarts": worker.restarts if worker is not None else 0, "no_phash": unhashed}
    if any(extra.values()):
        summary.extra = {k: v for k, v in extra.items() if v}
    return summary.finish()


def _safe(worker: IsolatedIngest, rel_path: str):
    try:
        return worker(rel_path)
    except Exception as exc:  # noqa: BLE001 - handed to the caller, who records it
        return exc
