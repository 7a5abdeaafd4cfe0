#!/usr/bin/env bash
# Every benchmark, one after the other, each appending its table to BENCHMARKS.md.
#
# They run from a snapshot of HEAD (git archive + this bench/ folder) in a temp folder, with
# PYTHONPATH pointing at it, so that edits to the working tree while they run (Snakemake re-runs
# jobs whose code or params changed) cannot change what is measured. Each script first waits (up
# to $WAIT s) for the 1-minute load average to fall below 1.5 and records the load it ran under.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
WAIT="${WAIT:-600}"
SNAP="$(mktemp -d /tmp/shardlens-bench-snapshot-XXXXXX)"
git -C "$REPO" archive HEAD | tar -x -C "$SNAP"
cp "$REPO"/bench/*.py "$REPO"/bench/*.sh "$SNAP/bench/"
export PYTHONPATH="$SNAP" BENCHMARKS_MD="$REPO/BENCHMARKS.md"
export BENCH_COMMIT="$(git -C "$REPO" rev-parse --short HEAD) (snapshot of HEAD; bench/ from the working tree)"
cd "$SNAP"
run() { echo "=== $* ($(date +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"; "$PY" "$@" --append --max-wait "$WAIT"; }
run bench/pipeline_overhead.py --images 500 --sizes 25 100 500 --width 480 --height 360 --text-fraction 0.2
run bench/text_gate.py --images 120
run bench/runtimes.py
run bench/catalog_import.py --shards 200 --per-shard 50
run bench/propagation_scale.py
run bench/plan_scale.py --parts plan --paths 1000000 --shards 1000 10000 100000 --dry-run-timeout 300
run bench/plan_scale.py --parts rerun --rerun-images 2000 --rerun-shards 1000 --rerun-until ingest
run bench/cluster_scale.py --texts 10000
run bench/cluster_scale.py --texts 100000
# the scale target: a million images at the default shard size (hours with a full re-cluster)
run bench/incremental.py --images 1000000 --timeout 14400 --memory-limit 16
rm -rf "$SNAP"
