import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.catalog import build_catalog

build_catalog(
    Path(snakemake.input.manifest).parent,
    snakemake.output[0],
    reviews_db=snakemake.params.reviews,
    log=lambda message: print(message, file=sys.stderr),
)
