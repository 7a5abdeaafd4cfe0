import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.demo import generate_demo
from shardlens.jobs import JobSummary

summary = JobSummary(shard="all", stage="demo_images")
truth = generate_demo(snakemake.output[0])
summary.images = summary.ok = summary.records = len(truth)
summary.finish()
