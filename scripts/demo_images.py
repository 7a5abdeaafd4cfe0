from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.demo import generate_demo
from shardlens.jobs import JobSummary

summary = JobSummary(shard="all", stage="demo_images")
truth = generate_demo(snakemake.output[0])
summary.images = summary.ok = summary.records = len(truth)
summary.finish()
