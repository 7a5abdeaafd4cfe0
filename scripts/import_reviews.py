import sys

from shardlens.jobs import log_job

log_job(snakemake.log[0], snakemake.rule)
import json

from shardlens.reviews import import_reviews

count = import_reviews(snakemake.input.csv, snakemake.input.db, snakemake.params.store)
with open(snakemake.output[0], "w") as receipt:
    json.dump({"csv": snakemake.input.csv, "reviews": count, "store": snakemake.params.store}, receipt, indent=2)
print(f"import_reviews: {count} reviews from {snakemake.input.csv}", file=sys.stderr)
