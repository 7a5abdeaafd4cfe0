"""What every stage job shares: a logger, a progress line, the closing JSON summary line, and
decoding images in a background thread while the model works."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


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
