#!/usr/bin/env bash
# Creates (or checks) the Label Studio venv: label-studio-sdk exactly as locked in
# envs/labelstudio-requirements.txt. tests/test_label_studio.py runs the SDK's own validation
# there (the exported tasks against the generated labeling config). Kept apart from the main venv:
# the SDK pins opencv-python-headless<4.13 (and with it numpy<2.3), the main venv pins 5.0.
#
#   SHARDLENS_LABELSTUDIO_VENV  where the venv lives (default: <repo>/.venv-labelstudio)
#   PYTHON                      interpreter to create it with (default: python3; the lock is for 3.11)
#   PIP_CACHE_DIR               pip's download/wheel cache (default: ~/.cache/pip), kept between runs
#
# Idempotent: a stamp named after the lock's sha256 marks a complete install, so a second run only
# runs the smoke check; a changed lock rebuilds the venv from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)

export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_CACHE_DIR="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
PYTHON="${PYTHON:-python3}"
VENV="${SHARDLENS_LABELSTUDIO_VENV:-$repo/.venv-labelstudio}"
LOCK="$repo/envs/labelstudio-requirements.txt"
stamp="$VENV/.deps-$(sha256sum "$LOCK" | cut -c1-16)"

if [ ! -f "$stamp" ]; then
    version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    if [ "$version" != "3.11" ]; then
        echo "labelstudio-venv: warning: $PYTHON is Python $version; the lock was made for 3.11" >&2
    fi
    if [ -e "$VENV" ]; then
        if [ ! -f "$VENV/pyvenv.cfg" ]; then
            echo "labelstudio-venv: $VENV exists and is not a venv; refusing to replace it" >&2
            exit 1
        fi
        echo "labelstudio-venv: $VENV is out of date or incomplete; rebuilding it"
        rm -rf "$VENV"
    fi
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet pip==26.3
    # --no-deps: the lock is complete (pip check below proves it)
    "$VENV/bin/python" -m pip install --quiet --no-deps -r "$LOCK"
    "$VENV/bin/python" -m pip check
    touch "$stamp"
fi

# smoke check: the SDK's label interface parses a config and validates a task against it
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
from label_studio_sdk.label_interface import LabelInterface
li = LabelInterface('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image"><Label value="cat"/></RectangleLabels></View>')
li.validate()
region = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["cat"]}}
assert li.validate_prediction({"result": [region]}, return_errors=True) == []
assert li.validate_prediction({"result": [{**region, "value": {**region["value"], "rectanglelabels": ["dog"]}}]}, return_errors=True)
print("labelstudio-venv: label-studio-sdk", md.version("label-studio-sdk"))
PY
echo "labelstudio-venv: ready in $(( $(date +%s) - start ))s ($VENV, $(du -sh "$VENV" | cut -f1))"
