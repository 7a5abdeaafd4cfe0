import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
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
