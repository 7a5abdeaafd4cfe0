# Ingest: hash, size and decode-check each listed file of a shard.


rule ingest:
    input:
        listing=f"{CACHE}/shards/{{shard}}.tsv",
    output:
        f"{CACHE}/ingest/{{shard}}.jsonl",
    log:
        "logs/ingest/{shard}.log",
    benchmark:
        "benchmarks/ingest/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        images=config["images"],
        limits=config["limits"],
        allow_outside_root=config["listing"]["allow_outside_root"],
    script:
        "../scripts/ingest.py"
