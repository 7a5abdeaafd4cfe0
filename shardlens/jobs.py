"""What every stage job shares: its log (which survives a full disk and ends a failed job with a
one-line reason), a logger, a progress line, the closing JSON summary line, and decoding images in
a background thread while the model works."""

from __future__ import annotations

import ctypes
import errno
import io
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


# Space kept allocated ahead of the end of a job's log, so that the reason a job failed can still
# be written when the disk is full (the usual reason it failed). Ordinary lines stop at
# LOG_FINAL_RESERVE before its end; the failure report may use all of it.
LOG_RESERVE = 64 * 1024
LOG_FINAL_RESERVE = 16 * 1024
_FALLOC_FL_KEEP_SIZE = 1
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _libc_fallocate():
    try:
        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fallocate.restype = ctypes.c_int
    return fallocate


class JobLog(io.TextIOBase):
    """A job's log file, for ``sys.stderr``: writes never raise, and space is held in reserve.

    Python writes an uncaught exception to ``sys.stderr``. When that is a plain file on a disk
    that has just filled up, the traceback cannot be written: Python says "lost sys.stderr" on
    the console, exits 120 because the final flush fails too, and the log stays empty. Here each
    write first extends a reservation of :data:`LOG_RESERVE` bytes past the end of the log
    (Linux ``fallocate`` with ``FALLOC_FL_KEEP_SIZE``: allocated, not yet part of the file); once
    the disk is full, ordinary lines use the reservation down to :data:`LOG_FINAL_RESERVE`, then
    are dropped (and counted), and :meth:`report_failure` writes into what is left. Where
    ``fallocate`` is not available the log is a plain file whose writes still never raise.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = os.fspath(path)
        # O_APPEND: a forked worker (ingest's decoder process) writes to the same log
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.path, flags, 0o666)
        self._pid = os.getpid()
        self._reserved_end = 0  # allocated up to here
        self._fallocate = _libc_fallocate()
        self.dropped = 0  # bytes of ordinary lines that did not fit
        self._reserve()

    @property
    def _end(self) -> int:
        try:
            return os.fstat(self._fd).st_size
        except OSError:
            return 0

    def _reserve(self) -> bool:
        """Extend the reservation to LOG_RESERVE past the end; False when the disk is full."""
        if self._fallocate is None:
            return False
        end = self._end
        if self._fallocate(self._fd, _FALLOC_FL_KEEP_SIZE, end, LOG_RESERVE) == 0:
            self._reserved_end = max(self._reserved_end, end + LOG_RESERVE)
            return True
        if ctypes.get_errno() not in _DISK_FULL:
            self._fallocate = None  # not supported here (filesystem, platform): plain writes
        return False

    def _write_bytes(self, data: bytes) -> int:
        written = 0
        while written < len(data):
            try:
                n = os.write(self._fd, data[written:])
            except InterruptedError:
                continue
            except OSError:
                break
            if n <= 0:
                break
            written += n
        return written

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return "utf-8"

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if self._fd < 0:
            return len(text)
        data = text.encode("utf-8", "backslashreplace")
        if not self._reserve() and self._fallocate is not None and self._reserved_end:
            # the disk is full: ordinary lines may use the reservation, not its last part
            # (with no reservation at all, full from the start, a plain write is all there is)
            if self._end + len(data) > self._reserved_end - LOG_FINAL_RESERVE:
                self.dropped += len(data)
                return len(text)
        written = self._write_bytes(data)
        self.dropped += len(data) - written
        return len(text)

    def flush(self) -> None:
        pass

    def report_failure(self, job: str, exc: BaseException) -> str:
        """Write ``{job} failed: <reason>`` as one line, then the traceback, into the log (into
        the reservation when the disk is full); return the line."""
        line = failure_line(job, exc)
        text = line + "\n"
        if self.dropped:
            text += f"({self.dropped} bytes of earlier log lines were dropped: the disk was full)\n"
        text += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        data = text.encode("utf-8", "backslashreplace")
        if self._fallocate is not None and self._reserved_end and not self._reserve():
            room = max(self._reserved_end - self._end, len(line.encode("utf-8", "backslashreplace")) + 1)
            data = data[:room]  # the reason line first, so it is what survives the cut
        self._write_bytes(data)
        return line

    def close(self) -> None:
        if self._fd < 0:
            return
        if os.getpid() == self._pid:
            try:  # hand back the reservation past the end (a shrinking truncate frees it)
                end = self._end
                os.ftruncate(self._fd, end + 1)
                os.ftruncate(self._fd, end)
            except OSError:
                pass
        os.close(self._fd)
        self._fd = -1
        super().close()


def failure_line(job: str, exc: BaseException) -> str:
    """One line saying why a job failed, with what to do when the reason is a full disk."""
    message = " ".join(str(exc).split()) or "(no message)"
    line = f"{job} failed: {type(exc).__name__}: {message}"
    full = (isinstance(exc, OSError) and exc.errno in _DISK_FULL) or "disk is full" in message or "No space left" in message
    if full:
        line += " -- the disk is full: free space, then run the workflow again"
    return line


def log_job(log_path: str | os.PathLike, job: str) -> JobLog:
    """Send this job process's stderr to its log; any uncaught exception then ends the log with
    ``{job} failed: <reason>`` on one line and the traceback below it, is repeated on one line
    on the console, and ends the process with exit status 1, also when the disk is full.

    Every script in ``scripts/`` calls this first: ``log_job(snakemake.log[0], snakemake.rule)``.
    """
    import atexit

    log = JobLog(log_path)
    console = sys.stderr
    sys.stderr = log

    def hook(exc_type, exc, tb):
        if not isinstance(exc, BaseException):
            exc = exc_type(exc)
        line = log.report_failure(job, exc)
        try:
            print(f"{line} (log: {log.path})", file=console, flush=True)
        except (OSError, ValueError):
            pass

    sys.excepthook = hook
    atexit.register(log.close)
    return log


def job_logger(stage: str) -> logging.Logger:
    logger = logging.getLogger(f"shardlens.{stage}")
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return logger


@dataclass
class JobSummary:
    """The one JSON line each job ends its log with: ``grep '"stage"' logs/*/*.log`` sums a run."""

    shard: str
    stage: str
    images: int = 0
    ok: int = 0
    errors: int = 0
    skipped: int = 0
    records: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    _start: float = field(default_factory=time.perf_counter, repr=False)

    def finish(self, stream=None) -> dict:
        self.seconds = round(time.perf_counter() - self._start, 3)
        line = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        if not line["extra"]:
            line.pop("extra")
        print(json.dumps(line, sort_keys=True), file=stream or sys.stderr, flush=True)
        return line


class Progress:
    """Logs 'stage shard: done/total' at most every ``every`` seconds and at the end."""

    def __init__(self, logger: logging.Logger, label: str, total: int, every: float = 10.0):
        self.logger, self.label, self.total, self.every = logger, label, total, every
        self.done = 0
        self._last = time.perf_counter()
        self._start = self._last

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.every or self.done == self.total:
            rate = self.done / max(now - self._start, 1e-9)
            self.logger.info("%s: %d/%d images (%.1f/s)", self.label, self.done, self.total, rate)
            self._last = now


def prefetch(items: Iterable[T], load: Callable[[T], R], depth: int = 4) -> Iterator[tuple[T, R | BaseException]]:
    """Yield ``(item, load(item))`` in order, loading up to ``depth`` items ahead in one thread.

    A loader exception is yielded in place of the result so one bad item never stops the rest.
    """

    def safe(item: T) -> R | BaseException:
        try:
            return load(item)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who records it
            return exc

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = []
        iterator = iter(items)
        for item in iterator:
            pending.append((item, pool.submit(safe, item)))
            if len(pending) >= depth:
                head, future = pending.pop(0)
                yield head, future.result()
        for head, future in pending:
            yield head, future.result()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Group a stream into lists of ``size`` without materialising it."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= max(1, size):
            yield batch
            batch = []
    if batch:
        yield batch
