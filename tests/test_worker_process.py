"""The worker-process supervisor (shardlens/worker_process.py) shared by ingest's isolated decoding
and the PaddleOCR bridge, for both kinds of worker: a fork running a function (pickled pipe
messages) and another interpreter running a module (JSON lines on stdin/stdout). A call past its
deadline kills the worker and counts it; a death is reported with its exit status or signal; a
lost worker is replaced at the next call (or, without restart, fails it); a stop asks first and
kills a worker that stays."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import textwrap
import time

import pytest

from shardlens.worker_process import (
    ForkedFunction,
    PythonModule,
    WorkerClosed,
    WorkerDied,
    WorkerProcess,
    WorkerTimeout,
)

STOP_TIMEOUT = 0.5  # how long a worker that ignores the goodbye keeps the test waiting
# for a worker that leaves when asked: long enough never to be reached, however loaded the machine
# (its exit, not this wait, ends the stop)
POLITE_STOP_TIMEOUT = 120.0
LOG = logging.getLogger("shardlens.test_worker_process")


def _serve(conn) -> None:
    """The forked worker: a request is (op, arg); the answer ("pid", pid)."""
    deaf = False
    while True:
        try:
            request = conn.recv()
        except EOFError:
            request = None
        if request is None:
            if not deaf:
                return
            time.sleep(60)
        op, arg = request
        if op == "sleep":
            time.sleep(arg)
        elif op == "signal":
            os.kill(os.getpid(), arg)
        elif op == "exit":
            os._exit(arg)
        elif op == "progress":
            for step in range(arg):
                conn.send(("progress", step))
        elif op == "deaf":
            deaf = True
        conn.send(("pid", os.getpid()))


MODULE = """
import json, os, signal, sys, time

stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
deaf = False
while True:
    line = stdin.readline()
    if not line:
        if deaf:
            time.sleep(60)
        break
    request = json.loads(line)
    payload = stdin.read(request["nbytes"]) if request.get("nbytes") else b""
    op = request["op"]
    if op == "shutdown" and not deaf:
        break
    if op == "sleep":
        time.sleep(request["arg"])
    elif op == "signal":
        print("about to die by signal", request["arg"], file=sys.stderr, flush=True)
        os.kill(os.getpid(), request["arg"])
    elif op == "exit":
        os._exit(request["arg"])
    elif op == "deaf":
        deaf = True
    stdout.write(json.dumps({"pid": os.getpid(), "payload": payload.decode()}).encode() + b"\\n")
    stdout.flush()
"""


class Kind:
    """One kind of worker, driven the same way: ``ask(op, arg)`` returns the worker's pid."""

    def __init__(self, name: str, tmp_path):
        self.name = name
        if name == "forked":
            self.kind = ForkedFunction(_serve)
        else:
            (tmp_path / "supervised_echo.py").write_text(textwrap.dedent(MODULE))
            env = {**os.environ, "PYTHONPATH": str(tmp_path)}
            self.kind = PythonModule(sys.executable, "supervised_echo", flags=["-S"], env=env, goodbye={"op": "shutdown"}, stderr_log=LOG, name="test-worker")

    def supervisor(self, restart: bool = True, stop_timeout: float = STOP_TIMEOUT) -> WorkerProcess:
        return WorkerProcess(self.kind, stop_timeout=stop_timeout, restart=restart)

    def ask(self, worker: WorkerProcess, op: str, arg=None, timeout: float = 30.0) -> int:
        if self.name == "forked":
            return worker.call((op, arg), timeout)[1]
        return worker.call(({"op": op, "arg": arg}, b""), timeout)["pid"]


@pytest.fixture(params=["forked", "module"])
def kind(request, tmp_path) -> Kind:
    if request.param == "forked" and sys.platform != "linux":
        pytest.skip("the test's worker function reaches the worker through fork")
    return Kind(request.param, tmp_path)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_call_past_its_deadline_kills_the_worker_and_the_next_call_gets_a_fresh_one(kind):
    worker = kind.supervisor()
    first = kind.ask(worker, "ping")
    with pytest.raises(WorkerTimeout):  # a call that waited for the sleep would have its answer
        kind.ask(worker, "sleep", 3600, timeout=0.5)
    assert worker.exitcode == -signal.SIGKILL and _gone(first)
    assert worker.restarts == 1
    second = kind.ask(worker, "ping")
    assert second not in (first, None) and worker.restarts == 1
    worker.close()


def test_a_death_is_reported_with_its_signal_or_exit_status(kind):
    worker = kind.supervisor()
    with pytest.raises(WorkerDied) as died:
        kind.ask(worker, "signal", signal.SIGSEGV)
    assert (died.value.exitcode, died.value.how, died.value.cause) == (-signal.SIGSEGV, "signal 11", None)
    with pytest.raises(WorkerDied) as died:
        kind.ask(worker, "exit", 3)
    assert (died.value.exitcode, died.value.how) == (3, "exit status 3")
    assert worker.restarts == 2
    assert kind.ask(worker, "ping") == worker.pid
    worker.close()


def test_a_worker_found_dead_between_calls_is_replaced(kind):
    worker = kind.supervisor()
    first = kind.ask(worker, "ping")
    os.kill(first, signal.SIGKILL)
    while worker.exitcode is None:
        time.sleep(0.01)
    assert kind.ask(worker, "ping") != first
    assert worker.restarts == 1
    worker.close()


def test_without_restart_a_lost_worker_fails_the_calls_after_it(kind):
    worker = kind.supervisor(restart=False)
    kind.ask(worker, "ping")
    with pytest.raises(WorkerTimeout):
        kind.ask(worker, "sleep", 60, timeout=0.3)
    with pytest.raises(WorkerDied) as died:
        kind.ask(worker, "ping")
    assert died.value.exitcode == -signal.SIGKILL and isinstance(died.value.cause, OSError)
    assert worker.restarts == 1
    worker.close()


def test_close_asks_first_then_kills_a_worker_that_stays(kind):
    polite, deaf = kind.supervisor(stop_timeout=POLITE_STOP_TIMEOUT), kind.supervisor()
    kind.ask(polite, "ping")
    kind.ask(deaf, "deaf")
    polite.close()
    assert polite.exitcode == 0
    started = time.monotonic()
    deaf.close()
    assert deaf.exitcode == -signal.SIGKILL and time.monotonic() - started >= STOP_TIMEOUT
    deaf.close()  # idempotent
    with pytest.raises(WorkerClosed):
        kind.ask(polite, "ping")


def test_a_forgotten_supervisor_stops_its_worker(kind):
    worker = kind.supervisor(stop_timeout=POLITE_STOP_TIMEOUT)
    pid = kind.ask(worker, "ping")
    process = worker.process
    del worker
    gc.collect()
    exitcode = process.exitcode if kind.name == "forked" else process.returncode
    assert exitcode == 0 and _gone(pid)


def test_interim_messages_share_the_deadline(tmp_path):
    worker = Kind("forked", tmp_path).supervisor()
    seen = []

    def progress(message) -> bool:
        if message[0] != "progress":
            return False
        seen.append(message[1])
        return True

    assert worker.call(("progress", 3), 30, interim=progress) == ("pid", worker.pid)
    assert seen == [0, 1, 2]
    worker.close()


def test_stderr_goes_to_the_log_and_its_tail_is_kept(tmp_path, caplog):
    kind = Kind("module", tmp_path)
    worker = kind.supervisor(restart=False)
    payload = worker.call(({"op": "ping"}, b"raw bytes"), 30)["payload"]
    assert payload == "raw bytes"  # sent after its header, announced by nbytes
    with caplog.at_level(logging.INFO, logger=LOG.name), pytest.raises(WorkerDied) as died:
        kind.ask(worker, "signal", signal.SIGTERM)
    assert died.value.how == f"signal {int(signal.SIGTERM)}"
    assert worker.stderr_tail == [f"about to die by signal {int(signal.SIGTERM)}"]
    assert f"about to die by signal {int(signal.SIGTERM)}" in caplog.messages
    worker.close()
