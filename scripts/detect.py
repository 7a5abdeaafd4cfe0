import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.images import Limits
from shardlens.stages.detect import run_shard

run_shard(
    ingest=snakemake.input.ingest,
    images_root=snakemake.params.images,
    output=snakemake.output[0],
    shard=snakemake.wildcards.shard,
    options=snakemake.params.options,
    threads=snakemake.threads,
    limits=Limits(**snakemake.params.limits),
)
