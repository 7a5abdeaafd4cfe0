from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.shards import run_listing

run_listing(snakemake.params.listing, snakemake.output[0], shard=snakemake.wildcards.shard, stage="shard_listing")
