from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from pathlib import Path

from shardlens.exports import run_export

run_export(snakemake.input.db, Path(snakemake.output.parquet_manifest).parent, config=snakemake.config)
