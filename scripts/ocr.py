from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.images import Limits
from shardlens.stages.ocr import run_shard

run_shard(
    ingest=snakemake.input.ingest,
    gate=snakemake.input.gate,
    images_root=snakemake.params.images,
    output=snakemake.output[0],
    shard=snakemake.wildcards.shard,
    threads=snakemake.threads,
    limits=Limits(**snakemake.params.limits),
    **snakemake.params.options,
)
