"""Calls that cannot take their caller down: each in a worker process, within a time limit.

:class:`IsolatedWorker` runs ``work(item, report)`` for one item at a time in a forked worker
process (spawned where fork does not exist). An item whose call takes longer than its time limit,
or whose call kills the worker (a crash in a C library), costs that item only: the worker is
killed or reaped and a fresh one takes the next item. The common case costs one fork per
:class:`IsolatedWorker` and two small pipe messages per item. The worker's lifecycle is
:class:`shardlens.worker_process.WorkerProcess`'s (a :class:`~shardlens.worker_process.ForkedFunction`);
this module adds the messages of a call: the item, its reports, its outcome.

Ingest reads and decodes each file this way (:class:`shardlens.stages.ingest.IsolatedIngest`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .worker_process import ForkedFunction, WorkerDied, WorkerProcess, WorkerTimeout

STOP_TIMEOUT_S = 5.0  # how long a worker has to leave (or to end after a crash) before it is killed


def _serve(conn, work: Callable[[Any, Callable[..., None]], Any]) -> None:
    """Worker loop: receive an item, send ('report', ...) for each report then ('done', result)."""
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            return
        if item is None:
            return
        try:
            result = work(item, lambda *facts: conn.send(("report", *facts)))
            conn.send(("done", result))
        except Exception as exc:  # noqa: BLE001 - a bug, not a bad item: reported for this item only
            conn.send(("bug", f"{type(exc).__name__}: {exc}"))


class IsolatedWorker:
    """Run ``work(item, report)`` in a worker process, one item at a time.

    ``work`` must be picklable where fork is not available (a module-level function, or a
    ``functools.partial`` of one); ``report(*facts)`` sends facts to the caller before the
    result (e.g. what is known of the item before a step that may hang). :meth:`run` returns
    one of ``("done", result)``, ``("timeout", None)``, ``("crashed", how)`` (``how``: "signal
    11", "exit status 1") and ``("bug", "TypeError: ...")`` (``work`` raised). ``restarts``
    counts the workers replaced after a timeout or a crash.
    """

    def __init__(self, work: Callable[[Any, Callable[..., None]], Any]):
        self.work = work
        self._process = WorkerProcess(ForkedFunction(_serve, work), stop_timeout=STOP_TIMEOUT_S, restart=True)

    @property
    def restarts(self) -> int:
        return self._process.restarts

    def run(self, item: Any, timeout: float, on_report: Callable[..., None]) -> tuple[str, Any]:
        """``work(item, report)`` in the worker within ``timeout`` seconds; ``on_report(*facts)``
        is called here for each report the call sends."""

        def report(message: tuple) -> bool:
            if message[0] != "report":
                return False
            on_report(*message[1:])
            return True

        try:
            outcome, value = self._process.call(item, timeout, interim=report)
        except WorkerTimeout:  # the worker was stuck in this item
            return "timeout", None
        except WorkerDied as died:
            return "crashed", died.how
        return outcome, value

    def close(self) -> None:
        self._process.close()
