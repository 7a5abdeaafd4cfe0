import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
import json

from shardlens.reviews import import_reviews

count = import_reviews(snakemake.input.csv, snakemake.input.db, snakemake.params.store)
with open(snakemake.output[0], "w") as receipt:
    json.dump({"csv": snakemake.input.csv, "reviews": count, "store": snakemake.params.store}, receipt, indent=2)
print(f"import_reviews: {count} reviews from {snakemake.input.csv}", file=sys.stderr)
