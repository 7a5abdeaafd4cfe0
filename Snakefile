# shardlens: image shards -> text gate, OCR (and detection, embeddings) -> manifest, SQLite.
# This file is the table of contents; the rules live in rules/, the logic in the shardlens package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/ingest.smk"
include: "rules/ocr.smk"
include: "rules/detect.smk"
include: "rules/embed.smk"
include: "rules/clusters.smk"
include: "rules/catalog.smk"
include: "rules/exports.smk"
include: "rules/reviews.smk"
include: "rules/report.smk"


# The default target: the manifest, the catalog, the exports, the ingest report and the report's figures.
rule all:
    default_target: True
    input:
        final_outputs,
