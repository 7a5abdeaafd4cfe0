import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.stages.embed import run_shard

run_shard(
    detect=snakemake.input.detect,
    ocr=snakemake.input.ocr,
    output=snakemake.output[0],
    shard=snakemake.wildcards.shard,
    options=snakemake.params.options,
    threads=snakemake.threads,
)
