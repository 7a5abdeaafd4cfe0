from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.shard_jobs import run_shard_jobs
from shardlens.stages import SHARD_STAGES

run_shard_jobs(
    snakemake.output[0],
    snakemake.wildcards.shard,
    logs=dict(zip(SHARD_STAGES, snakemake.input.logs)),
    benchmarks=dict(zip(SHARD_STAGES, snakemake.input.benchmarks)),
)
