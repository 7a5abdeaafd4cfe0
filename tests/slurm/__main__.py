"""Manual smoke test, as root from tests/: ``sudo python -m slurm``."""

import time

from .cluster import slurm_cluster

with slurm_cluster() as c:
    print(c.run("sinfo").stdout)
    out = c.root / "smoke.out"
    job = c.run(
        "sbatch",
        "--parsable",
        "--gpus=1",
        "-o",
        str(out),
        "--wrap",
        "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES; srun -n1 hostname",
    ).stdout.strip()
    deadline = time.monotonic() + 30
    while c.show_job(job).get("JobState") not in ("COMPLETED", "FAILED") and time.monotonic() < deadline:
        time.sleep(0.5)
    print(c.run("squeue", "-t", "all").stdout)
    print(out.read_text() if out.exists() else c.logs())
