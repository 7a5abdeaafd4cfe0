import sys

from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
from shardlens.catalog import build_catalog

build_catalog(
    snakemake.params.cache,
    snakemake.output[0],
    reviews_db=snakemake.params.reviews,
    propagate_similarity=snakemake.params.propagate_similarity,
    near_duplicate_distance=snakemake.params.near_duplicate_distance,
    log=lambda message: print(message, file=sys.stderr),
)
