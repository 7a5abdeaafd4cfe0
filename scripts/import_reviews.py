from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.reviews import run_import_reviews

run_import_reviews(snakemake.input.csv, snakemake.input.db, snakemake.params.store, snakemake.output[0])
