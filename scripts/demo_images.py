from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.demo.generate import run_demo_images

run_demo_images(snakemake.output[0])
