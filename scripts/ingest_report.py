from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.report import run_ingest_report

run_ingest_report(snakemake.input.db, snakemake.output[0], listing_skipped=snakemake.input.listing_skipped)
