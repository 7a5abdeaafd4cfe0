"""One shard's job record, ``logs/jobs/{shard}.json``: what its stage jobs reported (the images
and seconds of each job's closing summary line, the wall-clock seconds of its Snakemake benchmark).

The ``shard_jobs`` rule writes it once every stage of the shard is done, from the shard's logs and
benchmarks. The aggregate rules (manifest, catalog, report figures) take these files as their
inputs, one per shard, rather than every stage output, log and benchmark of every shard: Snakemake
checks each input of a job against each job it depends on, so at 2,048 shards those three jobs
spent about a minute before they started (docs/adr/0013-shard-job-records.md).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

from .atomic import atomic_open
from .stages import SHARD_STAGES


def job_summary(log: str | Path) -> dict | None:
    """The JSON summary line a job ends its log with (:class:`shardlens.jobs.JobSummary`), or None."""
    try:
        lines = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{") and '"stage"' in line:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "seconds" in record and "images" in record:
                return record
    return None


def benchmark_seconds(tsv: str | Path) -> float | None:
    """The wall-clock seconds (column ``s``) of a Snakemake benchmark file (summed over repeats)."""
    try:
        with Path(tsv).open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        return sum(float(row["s"]) for row in rows) if rows else None
    except (OSError, KeyError, ValueError):
        return None


def shard_jobs_record(shard: str, logs: Mapping[str, str | Path], benchmarks: Mapping[str, str | Path]) -> dict:
    """What one shard's stage jobs report, per stage: the images and seconds of the job's summary
    line (None when its log has none: a job that failed) and the benchmark's wall-clock seconds."""
    stages = {}
    for stage in SHARD_STAGES:
        summary = job_summary(logs[stage]) if stage in logs else None
        stages[stage] = {
            "images": int(summary["images"]) if summary is not None else None,
            "seconds": float(summary["seconds"]) if summary is not None else None,
            "wall_seconds": benchmark_seconds(benchmarks[stage]) if stage in benchmarks else None,
        }
    return {"shard": shard, "stages": stages}


def write_shard_jobs(out: str | Path, shard: str, logs: Mapping[str, str | Path], benchmarks: Mapping[str, str | Path]) -> dict:
    """The shard_jobs rule: ``logs/jobs/{shard}.json``, the record of :func:`shard_jobs_record`
    (written atomically). The aggregate rules take these files as inputs, one per shard, instead of
    every stage output, log and benchmark (docs/adr/0013-shard-job-records.md)."""
    record = shard_jobs_record(shard, logs, benchmarks)
    with atomic_open(out, "w") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
    return record


def run_shard_jobs(out: str | Path, shard: str, logs: Mapping[str, str | Path], benchmarks: Mapping[str, str | Path]) -> dict:
    """The shard_jobs rule's job: the record, then the job's JSON summary line."""
    from .jobs import JobSummary

    summary = JobSummary(shard=shard, stage="shard_jobs")
    record = write_shard_jobs(out, shard, logs, benchmarks)
    summary.records = 1
    summary.images = record["stages"]["ingest"]["images"] or 0
    summary.finish()
    return record
