import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from pathlib import Path

from shardlens.exports import export_all

paths = export_all(snakemake.input.db, Path(snakemake.output.csv).parent)
print(f"export: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
