"""The real workflow through `snakemake --profile profiles/slurm` on a real single-node Slurm:
stage jobs go through sbatch (grouped), GPU stages ask for a GPU, and the catalog equals the one
from a local `--cores 2` run of the same images."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import REPO, snakemake, write_config
from slurm.fixtures import slurm  # noqa: F401  (module-scoped fixture)

pytestmark = pytest.mark.slow

SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)\.?$", re.MULTILINE)
TABLES = {
    "paths": "path",
    "gate": "image_id",
    "ocr_lines": "image_id, line_no",
    "regions": "image_id, region_id",
    "region_labels": "image_id, region_id, rank",
    "embeddings": "kind, text",
    "clusters": "cluster_id",
    "cluster_members": "item, text",
}


def catalog_rows(db_path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db_path)
    rows = {table: conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall() for table, order in TABLES.items()}
    conn.close()
    return rows


def test_workflow_on_slurm_matches_a_local_run(slurm, tmp_path, tiny_images):  # noqa: F811
    local = tmp_path / "local"
    write_config(local, images=str(tiny_images), shards={"count": 3})
    snakemake(local, "--cores", "2")

    cluster_run = tmp_path / "cluster"
    write_config(cluster_run, images=str(tiny_images), shards={"count": 3})
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "profiles" / "slurm"),
        "--directory", str(cluster_run), *slurm.snakemake_args(),
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=cluster_run, env=slurm.env(), capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - start
    log = proc.stdout + proc.stderr
    print(f"workflow on Slurm: {elapsed:.1f} s")
    assert proc.returncode == 0, log[-6000:] + slurm.logs()

    submitted = SUBMITTED.findall(log)
    groups = {}
    for job_id, logfile in submitted:
        groups.setdefault(logfile.split("/slurm_logs/")[1].split("/")[0], []).append(job_id)
    # the 3 shards' CPU stages went in one sbatch, their GPU stages in another
    assert sorted(groups) == ["group_shard_cpu_gate_ingest_ocr", "group_shard_gpu_detect_embed_regions"], groups
    gpu_job = slurm.show_job(groups["group_shard_gpu_detect_embed_regions"][0])
    cpu_job = slurm.show_job(groups["group_shard_cpu_gate_ingest_ocr"][0])
    assert "gpu:1" in gpu_job.get("TresPerJob", ""), gpu_job
    assert "gpu" not in cpu_job.get("TresPerJob", ""), cpu_job
    # memory and time come from the rules (the profile sizes nothing): the CPU group asks for the
    # memory of its largest member (rules/ocr.smk: 4000 MB) and the minutes of all its members
    assert cpu_job.get("MinMemoryNode") == "4000M", cpu_job
    assert gpu_job.get("MinMemoryNode") == "4000M", gpu_job  # rules/detect.smk
    # the aggregate rules ran on the submitting host, not through sbatch
    assert "localrule catalog" in log and "localrule manifest" in log

    assert catalog_rows(cluster_run / "results" / "annotations.sqlite") == catalog_rows(local / "results" / "annotations.sqlite")
    shutil.rmtree(cluster_run / ".snakemake" / "slurm_logs", ignore_errors=True)
