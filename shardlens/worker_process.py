"""One supervised worker process: its start, a deadline per call, its death, its stop.

:class:`WorkerProcess` owns the lifecycle of a worker process that serves one request at a time:
it starts the worker (at the first call, or by :meth:`WorkerProcess.start`), gives each call a
deadline, kills a worker that runs past it (:class:`WorkerTimeout`), reaps one that ends during
a call and reports how it ended (:class:`WorkerDied`: its exit code, or the signal that killed
it), replaces a lost worker at the next call when ``restart`` is on (``restarts`` counts the lost
ones), and stops the worker gracefully (its goodbye message and the end of its input, then a kill
after ``stop_timeout``) at :meth:`WorkerProcess.close`, when the supervisor is garbage-collected,
or at interpreter exit, whichever comes first. Calls from several threads take turns.

Two parts are pluggable, in the *kind* of process handed to it (its ``start()`` returns the
process and the parent's end of the wire):

* :class:`ForkedFunction`: a fork of this interpreter (spawn where fork does not exist) running
  ``serve(conn, *args)``, with pickled messages on a :mod:`multiprocessing` pipe
  (:class:`PickledPipe`). The worker is killed when this process dies (Linux, even by SIGKILL;
  strictly, when the thread that started it ends), ignores Ctrl-C (the parent decides when it stops) and leaves crash reports to the parent.
  Ingest decodes files this way (:mod:`shardlens.isolated_worker`).
* :class:`PythonModule`: another interpreter (e.g. another venv's) running ``python -m module``,
  with JSON lines on its stdin/stdout, a request optionally followed by raw bytes
  (:class:`JsonLines`); its stderr goes to a logger, and its last lines are kept
  (:attr:`WorkerProcess.stderr_tail`) for error messages. Such a worker is to end at the end of
  its input, which comes when this process closes its end of the pipe or dies. The PaddleOCR bridge runs
  its worker this way (:mod:`shardlens.models.paddle_bridge`).
"""

from __future__ import annotations

import collections
import ctypes
import faulthandler
import json
import logging
import multiprocessing
import os
import queue
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

STDERR_TAIL_LINES = 40  # lines of a PythonModule worker's stderr kept for error messages


class WorkerError(Exception):
    """A call that the worker did not answer."""


class WorkerClosed(WorkerError):
    """The supervisor was closed: it takes no more calls."""


class WorkerTimeout(WorkerError):
    """The call ran past its deadline; the worker was killed."""

    def __init__(self, timeout: float):
        super().__init__(f"no answer within {timeout:g} s (killed)")
        self.timeout = timeout


class WorkerDied(WorkerError):
    """The worker ended (or was found dead) during a call. ``exitcode`` follows
    :attr:`subprocess.Popen.returncode` (negative: the signal that killed it); ``cause`` is the
    error of sending the request to it, None when it ended while the call waited for its answer."""

    def __init__(self, exitcode: int | None, cause: BaseException | None = None):
        self.exitcode, self.cause = exitcode, cause
        super().__init__(f"the worker ended ({self.how})" + (f" before taking the request ({cause})" if cause else ""))

    @property
    def how(self) -> str:
        """``signal 11``, ``exit status 1``."""
        code = self.exitcode
        return f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"


# -- the pluggable parts ---------------------------------------------------------------------


class Channel(Protocol):
    """The parent's end of the wire."""

    def send(self, message: Any) -> None:
        """Hand one request to the worker; OSError when it cannot take it."""

    def receive(self, timeout: float) -> Any:
        """The worker's next message; TimeoutError after ``timeout`` seconds, EOFError when
        the worker's output has ended."""

    def say_goodbye(self) -> None:
        """Ask the worker to leave (never raises)."""

    def close(self) -> None: ...


class Process(Protocol):
    """The worker process itself (exit codes as :attr:`subprocess.Popen.returncode`)."""

    raw: Any  # the multiprocessing.Process or subprocess.Popen
    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None) -> int | None:
        """The exit code, or None when it is still running after ``timeout`` seconds."""

    def kill(self) -> None: ...


class ProcessKind(Protocol):
    def start(self) -> tuple[Process, Channel]: ...


def die_with_parent() -> None:
    """Linux: this process is killed when its parent dies (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class PickledPipe:
    """Pickled messages on a :mod:`multiprocessing` pipe; the goodbye is ``None``."""

    def __init__(self, conn):
        self.conn = conn

    def send(self, message: Any) -> None:
        self.conn.send(message)

    def receive(self, timeout: float) -> Any:
        try:
            ready = self.conn.poll(timeout)
            message = self.conn.recv() if ready else None
        except OSError as exc:
            raise EOFError(str(exc)) from None
        if not ready:
            raise TimeoutError
        return message

    def say_goodbye(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass

    def close(self) -> None:
        self.conn.close()


class _Forked:
    def __init__(self, proc: multiprocessing.Process):
        self.raw, self.pid = proc, proc.pid

    def poll(self) -> int | None:
        return self.raw.exitcode

    def wait(self, timeout: float | None) -> int | None:
        self.raw.join(timeout)
        return self.raw.exitcode

    def kill(self) -> None:
        self.raw.kill()


def _forked_main(serve: Callable[..., None], conn, args: tuple) -> None:
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the worker stops
    faulthandler.disable()  # a crash is reported by the parent, for its call
    serve(conn, *args)


class ForkedFunction:
    """A fork of this interpreter running ``serve(conn, *args)``: ``conn`` is the worker's end of a
    duplex :mod:`multiprocessing` pipe; ``serve`` returns at ``None`` or at the end of input.
    Where fork does not exist (spawn), ``serve`` and ``args`` must be picklable."""

    def __init__(self, serve: Callable[..., None], *args: Any):
        self.serve, self.args = serve, args
        methods = multiprocessing.get_all_start_methods()
        self._ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")

    def start(self) -> tuple[Process, Channel]:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_forked_main, args=(self.serve, child, self.args), daemon=True)
        proc.start()
        child.close()
        return _Forked(proc), PickledPipe(parent)


class JsonLines:
    """One JSON line per message; a request is ``(header, payload)``, and a non-empty payload
    follows its header as raw bytes, announced by the header's ``nbytes``. Replies are read by a
    thread (``replies`` is its queue; None: the end of the worker's output)."""

    def __init__(self, stdin, replies: queue.Queue, goodbye: dict):
        self.stdin, self.replies, self.goodbye = stdin, replies, goodbye

    def send(self, message: tuple[dict, bytes]) -> None:
        header, payload = message
        if payload:
            header = {**header, "nbytes": len(payload)}
        self.stdin.write(json.dumps(header).encode("utf-8") + b"\n")
        if payload:
            self.stdin.write(payload)
        self.stdin.flush()

    def receive(self, timeout: float) -> dict:
        try:
            raw = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if raw is None:
            self.replies.put(None)  # later calls see the end too
            raise EOFError("the worker's output ended")
        return json.loads(raw)

    def say_goodbye(self) -> None:
        try:
            self.stdin.write(json.dumps(self.goodbye).encode("utf-8") + b"\n")
            self.stdin.flush()
        except (OSError, ValueError):
            pass
        self.close()

    def close(self) -> None:
        try:
            self.stdin.close()
        except (OSError, ValueError):
            pass


class _Child:
    def __init__(self, proc: subprocess.Popen, stderr_pump: threading.Thread, stderr_tail: collections.deque):
        self.raw, self.pid, self.stderr_pump, self.stderr_tail = proc, proc.pid, stderr_pump, stderr_tail

    def poll(self) -> int | None:
        return self.raw.poll()

    def wait(self, timeout: float | None) -> int | None:
        try:
            code = self.raw.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.stderr_pump.join(timeout=1.0)  # its last lines, for the error that reports its end
        return code

    def kill(self) -> None:
        self.raw.kill()


def _pump_stderr(stream, tail: collections.deque, log: logging.Logger) -> None:
    for raw in iter(stream.readline, b""):
        text = raw.decode("utf-8", "replace").rstrip()
        if text:
            tail.append(text)
            log.info("%s", text)
    stream.close()


def _pump_stdout(stream, replies: queue.Queue) -> None:
    for raw in iter(stream.readline, b""):
        replies.put(raw)
    replies.put(None)  # end of output: the worker exited
    stream.close()


class PythonModule:
    """``python [flags] -m module`` with ``env``, speaking :class:`JsonLines` on stdin/stdout;
    ``goodbye`` is the request that asks it to leave. Its stderr lines go to ``stderr_log``
    (INFO), and the last :data:`STDERR_TAIL_LINES` are kept; ``name`` names the reader threads."""

    def __init__(
        self,
        python: str | Path,
        module: str,
        *,
        flags: Sequence[str],
        env: dict[str, str],
        goodbye: dict,
        stderr_log: logging.Logger,
        name: str,
    ):
        self.argv = [str(python), *flags, "-m", module]
        self.env, self.goodbye, self.stderr_log, self.name = env, goodbye, stderr_log, name

    def start(self) -> tuple[Process, Channel]:
        proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        replies: queue.Queue = queue.Queue()
        stderr_pump = threading.Thread(target=_pump_stderr, args=(proc.stderr, tail, self.stderr_log), name=f"{self.name}-stderr", daemon=True)
        stderr_pump.start()
        threading.Thread(target=_pump_stdout, args=(proc.stdout, replies), name=f"{self.name}-stdout", daemon=True).start()
        return _Child(proc, stderr_pump, tail), JsonLines(proc.stdin, replies, self.goodbye)


# -- the supervisor --------------------------------------------------------------------------


class _Worker:
    """One started worker: what its finalizer needs, and no reference to the supervisor."""

    def __init__(self, process: Process, channel: Channel):
        self.process, self.channel = process, channel
        self.owner = os.getpid()  # a forked copy of the supervisor leaves the worker alone
        self.lost = False  # killed after a timeout, or found dead: waits to be replaced

    def end(self, timeout: float) -> int | None:
        """Reap the worker, killing it if it has not exited within ``timeout`` seconds."""
        code = self.process.wait(timeout)
        if code is None:
            self.process.kill()
            code = self.process.wait(timeout)
        return code


def _stop(worker: _Worker, lock: threading.RLock, timeout: float) -> None:
    """Ask the worker to leave (its goodbye, then the end of its input); kill it if it stays."""
    if os.getpid() != worker.owner:
        return
    if worker.process.poll() is None:
        with lock:
            worker.channel.say_goodbye()
        worker.end(timeout)
    worker.channel.close()


class WorkerProcess:
    """A worker process of ``kind`` (:class:`ForkedFunction`, :class:`PythonModule`), one call at
    a time. ``stop_timeout``: how long a worker has to leave (or to end after its output ended)
    before it is killed. ``restart``: a call after a lost worker (killed after a timeout, or
    dead) starts a fresh one; without it, that call fails with :class:`WorkerDied`.
    ``restarts`` counts the workers lost."""

    def __init__(self, kind: ProcessKind, *, stop_timeout: float, restart: bool):
        self.kind, self.stop_timeout, self.restart = kind, stop_timeout, restart
        self.restarts = 0
        self._lock = threading.RLock()  # re-entered when a call replaces a lost worker (its finalizer)
        self._worker: _Worker | None = None
        self._finalizer: weakref.finalize | None = None
        self._closed = False

    def start(self) -> None:
        """Start the worker now (a call starts it otherwise)."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._closed:
            raise WorkerClosed("the worker was closed")
        if self._finalizer is not None:
            self._finalizer()  # the lost worker's channel
        worker = self._worker = _Worker(*self.kind.start())
        self._finalizer = weakref.finalize(self, _stop, worker, self._lock, self.stop_timeout)

    def _lose(self, worker: _Worker, kill: bool) -> int | None:
        """Kill (after a timeout) or reap (after its death) a worker and count it lost."""
        if kill:
            worker.process.kill()
        code = worker.end(self.stop_timeout)
        if not worker.lost:
            worker.lost = True
            self.restarts += 1
        return code

    def call(self, message: Any, timeout: float, interim: Callable[[Any], bool] | None = None) -> Any:
        """Send ``message`` and return the worker's answer within ``timeout`` seconds. A message for
        which ``interim(message)`` is true (it took it, e.g. a progress report) is not the answer:
        the call waits on for the next, within the same deadline."""
        with self._lock:
            if self._closed:
                raise WorkerClosed("the worker was closed")
            worker = self._worker
            if worker is not None and not worker.lost and worker.process.poll() is not None:
                self._lose(worker, kill=False)  # died between calls
            if worker is None or (worker.lost and self.restart):
                self._start()
                worker = self._worker
            deadline = time.monotonic() + timeout
            try:
                worker.channel.send(message)
            except OSError as exc:
                raise WorkerDied(self._lose(worker, kill=False), exc) from None
            while True:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    reply = worker.channel.receive(remaining)
                except TimeoutError:  # the worker is stuck in this call
                    self._lose(worker, kill=True)
                    raise WorkerTimeout(timeout) from None
                except EOFError:
                    raise WorkerDied(self._lose(worker, kill=False)) from None
                if interim is None or not interim(reply):
                    return reply

    @property
    def process(self) -> Any:
        """The current (or last) worker's multiprocessing.Process or subprocess.Popen."""
        return None if self._worker is None else self._worker.process.raw

    @property
    def pid(self) -> int | None:
        return None if self._worker is None else self._worker.process.pid

    @property
    def exitcode(self) -> int | None:
        """The current (or last) worker's exit code; None while it runs (or before it started)."""
        return None if self._worker is None else self._worker.process.poll()

    @property
    def stderr_tail(self) -> list[str]:
        """The last lines of the worker's stderr, where they are kept (:class:`PythonModule`)."""
        return list(getattr(self._worker.process, "stderr_tail", ())) if self._worker is not None else []

    def close(self) -> None:
        """Stop the worker gracefully, and take no more calls (idempotent)."""
        self._closed = True
        if self._finalizer is not None:
            self._finalizer()
