"""Per-shard stages, in run order. This list is the one place that names them: the Snakemake
rules, the manifest and the catalog loader all read it."""

# stage name -> record kind (its JSON Schema in shardlens/contracts/)
SHARD_STAGES: dict[str, str] = {
    "ingest": "ingest",
    "gate": "gate",
    "ocr": "ocr",
}
