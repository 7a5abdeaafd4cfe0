import sys

from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.clustering import run_clustering

run_clustering(
    list(snakemake.input),
    snakemake.output[0],
    snakemake.params.options,
    threads=snakemake.threads,
    log=lambda message: print(message, file=sys.stderr),
)
