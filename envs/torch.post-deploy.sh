#!/usr/bin/env bash
# Run by Snakemake inside the freshly created envs/torch.yaml env (post-deploy script): export
# all-MiniLM-L6-v2 to ONNX once for the default embed backend (a no-op when it is already there).
set -euo pipefail
shardlens export-embedder
