"""Worker loop of the PaddleOCR bridge; runs in the paddle venv:

    <paddle venv>/bin/python -m shardlens.models.paddle_worker

Protocol on stdin/stdout, one request at a time:

* request: one JSON line ``{"op": ..., ...}``, followed by ``nbytes`` raw bytes when the header
  has ``nbytes`` (``recognize``: the C-contiguous uint8 RGB pixels, ``shape`` [h, w, 3]);
* reply: one JSON line ``{"ok": true, ...}`` or ``{"ok": false, "error": ..., "traceback": ...}``.

Ops: ``init`` (``options``: the ``ocr`` config values, ``threads``, ``models_dir``: what
PaddleOCREngine takes; must come first), ``warmup``,
``recognize``, ``ping``, ``shutdown``. End of input (the parent exited) ends the worker too.

The protocol owns the original stdout; file descriptor 1 is pointed at stderr before paddle is
imported, so whatever paddle or its C++ side prints cannot corrupt a reply.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

PROTOCOL_VERSION = 2  # 2: init sends the ocr options, threads and models_dir


def _reply(channel, message: dict) -> None:
    channel.write(json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n")
    channel.flush()


def _read_exact(stream, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError(f"input ended {left} bytes before the end of a {size}-byte payload")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve(requests, replies) -> int:
    engine = None
    while True:
        line = requests.readline()
        if not line:  # parent closed our stdin: it is gone or done
            return 0
        started = time.perf_counter()
        try:
            header = json.loads(line)
            payload = _read_exact(requests, int(header["nbytes"])) if header.get("nbytes") else b""
            op = header.get("op")
            if op == "ping":
                _reply(replies, {"ok": True, "pid": os.getpid()})
            elif op == "shutdown":
                _reply(replies, {"ok": True})
                return 0
            elif op == "init":
                from importlib.metadata import version

                import shardlens

                from ..options import OCROptions
                from .paddle_ocr import PaddleOCREngine

                engine = PaddleOCREngine(OCROptions.from_values(header["options"]), header["threads"], header["models_dir"])
                _reply(
                    replies,
                    {
                        "ok": True,
                        "protocol": PROTOCOL_VERSION,
                        "pid": os.getpid(),
                        "python": sys.executable,
                        "shardlens": os.path.dirname(shardlens.__file__),
                        "source": engine.source,
                        "weight_files": [str(p) for p in engine.weight_files],
                        "model_dirs": {role: str(p) for role, p in engine.model_dirs.items()},
                        "versions": {name: version(name) for name in ("paddleocr", "paddlex", "paddlepaddle", "numpy", "opencv-contrib-python")},
                        "seconds": round(time.perf_counter() - started, 3),
                    },
                )
            elif engine is None:
                raise RuntimeError(f"op {op!r} before a successful 'init'")
            elif op == "warmup":
                engine.warmup()
                _reply(replies, {"ok": True, "seconds": round(time.perf_counter() - started, 3)})
            elif op == "recognize":
                import numpy as np

                shape = tuple(int(v) for v in header["shape"])
                image = np.frombuffer(payload, dtype=np.uint8).reshape(shape)
                lines = engine.recognize(image)
                _reply(
                    replies,
                    {
                        "ok": True,
                        "lines": [[line.text, line.confidence, list(line.bbox)] for line in lines],
                        "seconds": round(time.perf_counter() - started, 4),
                    },
                )
            else:
                raise ValueError(f"unknown op {op!r}")
        except EOFError:
            return 0
        except Exception as exc:  # reported to the parent, which raises it there
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ImportError):
                error += f" (in {sys.prefix}: the paddle venv is incomplete; rebuild it with `make paddle-venv`)"
            _reply(replies, {"ok": False, "error": error, "traceback": traceback.format_exc()})


def main() -> int:
    # Ctrl-C reaches the whole process group: let the parent decide; we end when stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints (Python or C++) -> stderr
    sys.stdout = sys.stderr
    return serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    sys.exit(main())
