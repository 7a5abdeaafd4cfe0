"""Ingest stage: hash, size and decode-check every listed file of a shard.

The decoded image also gives its perceptual hash (``phash``, :mod:`shardlens.near_duplicates`),
computed here where the pixels are already in memory: a function of the file alone.

Every file gets a record: ``status`` ok, or error with a reason code. Nothing a file contains can
stop its shard: each file is read and decoded in a worker process (:class:`IsolatedIngest`) that
is given ``limits.decode_timeout_s`` per file, so a decoder that hangs or crashes costs that file
(``decode_timeout`` / ``corrupt``) and a fresh worker takes the next one.
"""

from __future__ import annotations

import ctypes
import faulthandler
import hashlib
import multiprocessing
import os
import signal
import stat
import time
from pathlib import Path

from ..images import ImageError, Limits, open_image, read_bytes, resolve_inside
from ..jobs import JobSummary, Progress, job_logger, prefetch
from ..near_duplicates import perceptual_hash, require_hasher
from ..records import SCHEMA_VERSION, write_jsonl
from ..shards import read_listing


def ingest_file(root: Path, rel_path: str, limits: Limits, allow_outside_root: bool = False, on_read=None) -> dict:
    """The ingest record of one file; never raises for a bad file (status 'error' + reason).

    ``on_read(image_id, n_bytes)``, if given, is called once the bytes are read and hashed,
    before decoding (the worker reports it so a decode timeout still knows the image id).
    """
    record = _empty_record(rel_path)
    try:
        path = resolve_inside(root, rel_path, allow_outside_root)
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


def _die_with_parent() -> None:
    """Linux: the worker is killed when the job process dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve(conn, root: Path, limits: Limits, allow_outside_root: bool) -> None:
    """Worker loop: receive a path, send ('read', image_id, bytes) then ('done', record)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the worker stops
    faulthandler.disable()  # a decoder crash is recorded by the parent, for its file
    while True:
        try:
            rel_path = conn.recv()
        except (EOFError, OSError):
            return
        if rel_path is None:
            return
        try:
            record = ingest_file(
                root, rel_path, limits, allow_outside_root, on_read=lambda image_id, n: conn.send(("read", image_id, n))
            )
            conn.send(("done", record))
        except Exception as exc:  # noqa: BLE001 - a bug, not a bad file: reported for this file only
            conn.send(("bug", f"{type(exc).__name__}: {exc}"))


class IsolatedIngest:
    """Ingest files one by one in a worker process, each within ``limits.decode_timeout_s``.

    The common case costs one fork per shard job and two small pipe messages per file. A file
    whose read and decode take longer gets ``decode_timeout``; a worker that dies (a decoder
    crash) gets ``corrupt``; either way the worker is replaced and the shard goes on.
    """

    def __init__(self, root: Path, limits: Limits, allow_outside_root: bool = False):
        self.root, self.limits, self.allow_outside_root = Path(root), limits, allow_outside_root
        methods = multiprocessing.get_all_start_methods()
        self._ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._proc = None
        self._conn = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_serve, args=(child, self.root, self.limits, self.allow_outside_root), daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent

    def _stop(self, kill: bool) -> None:
        if self._proc is None:
            return
        if kill:
            self._proc.kill()
        else:
            try:
                self._conn.send(None)
            except OSError:
                pass
        self._proc.join(timeout=5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()
        self._proc = self._conn = None

    def __call__(self, rel_path: str) -> dict:
        if self._proc is None:
            self._start()
        timeout = float(self.limits.decode_timeout_s)
        deadline = time.monotonic() + timeout
        record = _empty_record(rel_path)
        self._conn.send(rel_path)
        while True:
            remaining = deadline - time.monotonic()
            try:
                ready = remaining > 0 and self._conn.poll(remaining)
                message = self._conn.recv() if ready else None
            except (EOFError, OSError):
                code = self._proc.exitcode if self._proc is not None else None
                self._proc.join(timeout=5)
                code = self._proc.exitcode if code is None else code
                self._stop(kill=True)
                self.restarts += 1
                how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
                return record | {"status": "error", "error": "corrupt", "error_detail": f"the decoder crashed ({how})"}
            if message is None:  # out of time: the worker is stuck in this file
                self._stop(kill=True)
                self.restarts += 1
                return record | {
                    "status": "error",
                    "error": "decode_timeout",
                    "error_detail": f"reading and decoding took longer than {timeout:g} s (limits.decode_timeout_s)",
                }
            if message[0] == "read":
                record["image_id"], record["bytes"] = message[1], message[2]
                continue
            if message[0] == "bug":
                return record | {"status": "error", "error": "io_error", "error_detail": message[1]}
            return message[1]

    def close(self) -> None:
        self._stop(kill=False)

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
    if limits.decode_timeout_s:
        worker = IsolatedIngest(root, limits, allow_outside_root)
        results = ((p, _safe(worker, p)) for p in paths)
    else:
        worker = None
        results = prefetch(paths, lambda p: ingest_file(root, p, limits, allow_outside_root))
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
