import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.report import run_ingest_report

run_ingest_report(snakemake.input.db, snakemake.output[0], listing_skipped=snakemake.input.listing_skipped)
