"""PaddleOCR from the main venv: one long-lived worker process in the paddle venv per engine.

paddlepaddle/paddlex need their own OpenCV build (opencv-contrib-python 4.10) and numpy < 2.4, so
they live in a separate venv (``make paddle-venv``), never in the main one. A
:class:`PaddleBridgeEngine` starts ``<venv>/bin/python -m shardlens.models.paddle_worker`` once,
sends it raw RGB pixels over stdin and reads JSON lines back (protocol in
:mod:`shardlens.models.paddle_worker`). The worker's stderr goes to the ``shardlens.paddle_worker``
logger (the job log). The worker is shut down by :meth:`close`, at ``with`` exit, when the engine
is garbage-collected, or at interpreter exit, whichever comes first.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import subprocess
import threading
import weakref
from pathlib import Path

import numpy as np

from ..options import OCROptions
from .ocr_interface import OCRLine
from .paddle_models import REPO_ROOT, PaddleNotInstalled, paddle_venv

log = logging.getLogger("shardlens.paddle_worker")


class PaddleWorkerError(RuntimeError):
    """The worker failed, died or did not answer in time; the message carries its stderr tail."""


def _pump_stderr(stream, tail: collections.deque) -> None:
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


def _stop_worker(proc: subprocess.Popen, lock: threading.Lock, timeout: float = 10.0) -> None:
    """Ask the worker to leave, then close its stdin (it exits on EOF too); kill if stuck."""
    if proc.poll() is None:
        with lock:
            try:
                proc.stdin.write(b'{"op": "shutdown"}\n')
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


class PaddleBridgeEngine:
    """The OCREngine protocol, served by :class:`~shardlens.models.paddle_ocr.PaddleOCREngine`
    running in the paddle venv, which gets ``options``, ``threads`` and ``models_dir``. The worker
    process itself: ``venv`` overrides ``SHARDLENS_PADDLE_VENV``; ``python_flags`` go before
    ``-m`` (e.g. ``["-W", "error"]``); the timeouts bound its start and each call."""

    name = "paddleocr"

    def __init__(
        self,
        options: OCROptions,
        threads: int,
        models_dir: str | Path | None,
        venv: str | Path | None = None,
        python_flags: list[str] | tuple[str, ...] = (),
        startup_timeout: float = 600.0,
        call_timeout: float = 600.0,
    ):
        venv = Path(venv).expanduser().absolute() if venv else paddle_venv()
        python = venv / "bin" / "python"
        if not python.exists():
            raise PaddleNotInstalled(
                f"ocr.engine 'paddleocr' runs in its own venv, and {python} does not exist: create it with "
                "`make paddle-venv` (or point SHARDLENS_PADDLE_VENV at an existing one)"
            )
        self.venv = venv
        self.call_timeout = call_timeout
        init = {"options": options.to_dict(), "threads": threads, "models_dir": None if models_dir is None else str(models_dir)}
        env = dict(os.environ)
        # the worker runs this checkout's shardlens, whatever the venv's editable install points at
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env["PYTHONUNBUFFERED"] = "1"
        env["SHARDLENS_PADDLE_VENV"] = str(venv)
        env.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        env.setdefault("OMP_NUM_THREADS", str(max(1, threads)))
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._replies: queue.Queue = queue.Queue()
        self._proc = subprocess.Popen(
            [str(python), *python_flags, "-m", "shardlens.models.paddle_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._finalizer = weakref.finalize(self, _stop_worker, self._proc, self._lock)
        threading.Thread(target=_pump_stderr, args=(self._proc.stderr, self._tail), name="paddle-worker-stderr", daemon=True).start()
        threading.Thread(target=_pump_stdout, args=(self._proc.stdout, self._replies), name="paddle-worker-stdout", daemon=True).start()
        try:
            reply = self._call({"op": "init", **init}, timeout=startup_timeout)
        except BaseException:
            self.close()
            raise
        self.info = reply
        self.source: str = reply["source"]
        self._weight_files = [Path(p) for p in reply["weight_files"]]
        log.info("paddle worker %s ready in %ss: %s (%s)", reply["pid"], reply["seconds"], self.source, reply["python"])

    # -- protocol --------------------------------------------------------------------------

    def _failure(self, what: str) -> PaddleWorkerError:
        code = self._proc.poll()
        state = f"exited with code {code}" if code is not None else "is still running"
        tail = "\n".join(self._tail) or "(nothing on stderr)"
        return PaddleWorkerError(f"paddle worker {what}; it {state}. Last lines of its stderr:\n{tail}")

    def _call(self, header: dict, payload: bytes = b"", timeout: float | None = None) -> dict:
        if self._finalizer is None or not self._finalizer.alive:
            raise PaddleWorkerError("paddle worker was closed")
        if payload:
            header = {**header, "nbytes": len(payload)}
        with self._lock:
            try:
                self._proc.stdin.write(json.dumps(header).encode("utf-8") + b"\n")
                if payload:
                    self._proc.stdin.write(payload)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise self._failure(f"could not take the {header['op']!r} request ({exc})") from None
            try:
                raw = self._replies.get(timeout=timeout or self.call_timeout)
            except queue.Empty:
                self._proc.kill()
                raise self._failure(f"did not answer {header['op']!r} within {timeout or self.call_timeout:.0f}s (killed)") from None
        if raw is None:
            self._replies.put(None)  # later calls see the end too
            self._proc.wait(timeout=10)
            raise self._failure(f"ended during {header['op']!r}")
        reply = json.loads(raw)
        if not reply.get("ok"):
            raise PaddleWorkerError(f"paddle worker failed on {header['op']!r}: {reply.get('error')}\n{reply.get('traceback', '')}")
        return reply

    # -- OCREngine protocol ----------------------------------------------------------------

    @property
    def weight_files(self) -> list[Path]:
        return list(self._weight_files)

    def warmup(self) -> None:
        self._call({"op": "warmup"})

    def recognize(self, image_rgb: np.ndarray) -> list[OCRLine]:
        image = np.asarray(image_rgb)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        image = np.ascontiguousarray(image[:, :, :3])
        reply = self._call({"op": "recognize", "shape": list(image.shape)}, image.tobytes())
        return [OCRLine(text=text, confidence=float(conf), bbox=tuple(float(v) for v in bbox)) for text, conf, bbox in reply["lines"]]

    # -- lifetime --------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        """Stop the worker (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> PaddleBridgeEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
