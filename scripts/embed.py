from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.stages.embed import run_shard

run_shard(
    regions=snakemake.input.regions,
    ocr=snakemake.input.ocr,
    output=snakemake.output[0],
    shard=snakemake.wildcards.shard,
    options=snakemake.params.options,
    threads=snakemake.threads,
)
