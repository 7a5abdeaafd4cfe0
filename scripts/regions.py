from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.stages.regions import run_shard

run_shard(
    detect=snakemake.input.detect,
    output=snakemake.output[0],
    shard=snakemake.wildcards.shard,
    options=snakemake.params.options,
    threads=snakemake.threads,
)
