import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.shards import run_listing

run_listing(snakemake.params.listing, snakemake.output[0], shard=snakemake.wildcards.shard, stage="shard_listing")
