from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.exports import run_export

run_export(snakemake.input.db, snakemake.params.out_dir, config=snakemake.config)
