"""Per-shard stages, in run order, and the aggregate files made from all shards. These lists are
the one place that names them: the Snakemake rules, the manifest and the catalog loader read them."""

# stage name -> record kind (its JSON Schema in shardlens/contracts/); file cache/{stage}/{shard}.jsonl
SHARD_STAGES: dict[str, str] = {
    "ingest": "ingest",
    "gate": "gate",
    "ocr": "ocr",
    "detect": "detection",  # the detector's own names and scores
    "regions": "region",  # the same regions with the ontology applied: what everything after reads
    "embed": "embedding",
}

# aggregate name -> record kind; file cache/{name}.jsonl, made from every shard
AGGREGATES: dict[str, str] = {
    "clusters": "cluster",
}
