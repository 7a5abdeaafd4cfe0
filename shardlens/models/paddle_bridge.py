"""PaddleOCR from the main venv: one long-lived worker process in the paddle venv per engine.

paddlepaddle/paddlex need their own OpenCV build (opencv-contrib-python 4.10) and numpy < 2.4, so
they live in a separate venv (``make paddle-venv``), never in the main one. A
:class:`PaddleBridgeEngine` starts ``<venv>/bin/python -m shardlens.models.paddle_worker`` once,
sends it raw RGB pixels over stdin and reads JSON lines back (protocol in
:mod:`shardlens.models.paddle_worker`). The worker's stderr goes to the ``shardlens.paddle_worker``
logger (the job log). Its lifecycle (start, the deadline of each call, a kill after a timeout, its
death reported with its exit code, the graceful stop) is a :class:`shardlens.worker_process.WorkerProcess`'s,
of kind :class:`~shardlens.worker_process.PythonModule`. The worker is shut down by :meth:`close`,
at ``with`` exit, when the engine is garbage-collected, or at interpreter exit, whichever comes first.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..options import OCROptions
from ..worker_process import PythonModule, WorkerClosed, WorkerDied, WorkerProcess, WorkerTimeout
from .ocr_interface import OCRLine
from .paddle_models import REPO_ROOT, PaddleNotInstalled, paddle_venv

log = logging.getLogger("shardlens.paddle_worker")

STOP_TIMEOUT_S = 10.0  # how long the worker has to leave (or to end after its output ended) before it is killed


class PaddleWorkerError(RuntimeError):
    """The worker failed, died or did not answer in time; the message carries its stderr tail."""


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
        worker = PythonModule(
            python,
            "shardlens.models.paddle_worker",
            flags=python_flags,
            env=env,
            goodbye={"op": "shutdown"},
            stderr_log=log,
            name="paddle-worker",
        )
        # no restart: a fresh worker would need its 'init' again; a lost one fails the calls after it
        self._worker = WorkerProcess(worker, stop_timeout=STOP_TIMEOUT_S, restart=False)
        self._worker.start()
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
        code = self._worker.exitcode
        state = f"exited with code {code}" if code is not None else "is still running"
        tail = "\n".join(self._worker.stderr_tail) or "(nothing on stderr)"
        return PaddleWorkerError(f"paddle worker {what}; it {state}. Last lines of its stderr:\n{tail}")

    def _call(self, header: dict, payload: bytes = b"", timeout: float | None = None) -> dict:
        op, timeout = header["op"], timeout or self.call_timeout
        try:
            reply = self._worker.call((header, payload), timeout)
        except WorkerClosed:
            raise PaddleWorkerError("paddle worker was closed") from None
        except WorkerTimeout:
            raise self._failure(f"did not answer {op!r} within {timeout:.0f}s (killed)") from None
        except WorkerDied as died:
            raise self._failure(f"ended during {op!r}" if died.cause is None else f"could not take the {op!r} request ({died.cause})") from None
        if not reply.get("ok"):
            raise PaddleWorkerError(f"paddle worker failed on {op!r}: {reply.get('error')}\n{reply.get('traceback', '')}")
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
        return self._worker.pid

    @property
    def _proc(self):
        """The worker's subprocess.Popen."""
        return self._worker.process

    def close(self) -> None:
        """Stop the worker (idempotent)."""
        self._worker.close()

    def __enter__(self) -> PaddleBridgeEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
