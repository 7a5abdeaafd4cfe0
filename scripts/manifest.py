from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.manifest import run_manifest
from shardlens.models.registry import models_for_config

run_manifest(
    snakemake.params.cache,
    snakemake.output[0],
    snakemake.params.shards,
    models_for_config(snakemake.config),
    config=snakemake.config,
    shard_count=snakemake.params.shard_count,
    history=snakemake.params.history,
)
