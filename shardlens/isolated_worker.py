"""Calls that cannot take their caller down: each in a worker process, within a time limit.

:class:`IsolatedWorker` runs ``work(item, report)`` for one item at a time in a forked worker
process (spawned where fork does not exist). An item whose call takes longer than its time limit,
or whose call kills the worker (a crash in a C library), costs that item only: the worker is
killed or reaped and a fresh one takes the next item. The common case costs one fork per
:class:`IsolatedWorker` and two small pipe messages per item.

Ingest reads and decodes each file this way (:class:`shardlens.stages.ingest.IsolatedIngest`).
"""

from __future__ import annotations

import ctypes
import faulthandler
import multiprocessing
import signal
import time
from collections.abc import Callable
from typing import Any


def _die_with_parent() -> None:
    """Linux: the worker is killed when the job process dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve(conn, work: Callable[[Any, Callable[..., None]], Any]) -> None:
    """Worker loop: receive an item, send ('report', ...) for each report then ('done', result)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the worker stops
    faulthandler.disable()  # a crash is recorded by the parent, for its item
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
        methods = multiprocessing.get_all_start_methods()
        self._ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._proc = None
        self._conn = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_serve, args=(child, self.work), daemon=True)
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

    def run(self, item: Any, timeout: float, on_report: Callable[..., None]) -> tuple[str, Any]:
        """``work(item, report)`` in the worker within ``timeout`` seconds; ``on_report(*facts)``
        is called here for each report the call sends."""
        if self._proc is None:
            self._start()
        deadline = time.monotonic() + timeout
        self._conn.send(item)
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
                return "crashed", f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            if message is None:  # out of time: the worker is stuck in this item
                self._stop(kill=True)
                self.restarts += 1
                return "timeout", None
            if message[0] == "report":
                on_report(*message[1:])
                continue
            return message[0], message[1]

    def close(self) -> None:
        self._stop(kill=False)
