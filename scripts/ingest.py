from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.images import Limits
from shardlens.stages.ingest import run_shard

run_shard(
    listing=snakemake.input.listing,
    images_root=snakemake.params.images,
    output=snakemake.output[0],
    shard=snakemake.wildcards.shard,
    limits=Limits(**snakemake.params.limits),
    allow_outside_root=snakemake.params.allow_outside_root,
)
