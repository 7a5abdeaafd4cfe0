import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.labels import run_clustering

run_clustering(
    list(snakemake.input),
    snakemake.output[0],
    snakemake.params.options,
    threads=snakemake.threads,
    log=lambda message: print(message, file=sys.stderr),
)
