import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.manifest import build_manifest, write_manifest
from shardlens.models.registry import models_for_config

manifest = build_manifest(
    Path(snakemake.output[0]).parent, snakemake.params.shards, models_for_config(snakemake.config)
)
write_manifest(snakemake.output[0], manifest)
print(f"manifest: {len(manifest['shards'])} shards, dataset {manifest['dataset_digest'][:12]}", file=sys.stderr)
