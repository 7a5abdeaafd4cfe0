import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.manifest import run_manifest
from shardlens.models.registry import models_for_config

run_manifest(
    snakemake.output[0],
    snakemake.params.shards,
    models_for_config(snakemake.config),
    config=snakemake.config,
    shard_count=snakemake.params.shard_count,
    history=snakemake.params.history,
)
