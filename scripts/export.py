import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from pathlib import Path

from shardlens.exports import run_export

run_export(snakemake.input.db, Path(snakemake.output.csv).parent, config=snakemake.config)
