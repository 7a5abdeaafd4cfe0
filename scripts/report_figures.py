from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.run_report import run_report_figures

run_report_figures(
    snakemake.input.db,
    dict(snakemake.output.items()),
    gate_threshold=snakemake.params.gate_threshold,
    ingest_report=snakemake.input.ingest_report,
    listing_skipped=snakemake.input.listing_skipped,
    shard_jobs=snakemake.input.shard_jobs,
)
