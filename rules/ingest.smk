# Shard listings, then ingest: hash, size and decode-check each listed file of a shard.


# Makes cache/shards/{shard}.tsv: the shard's listing, written from the plan; it re-runs when the
# shard's images change.
rule shard_listing:
    input:
        generated_images,
    output:
        f"{CACHE}/shards/{{shard}}.tsv",
    log:
        "logs/shard_listing/{shard}.log",
    benchmark:
        "benchmarks/shard_listing/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(500),
        runtime=attempt_scaled(5),
    params:
        listing=shard_listing,
    script:
        "../scripts/shard_listing.py"


# Makes cache/listing_skipped.tsv: what the folder walk left out (symlinks leaving the root,
# loops, ...), for the ingest report.
rule listing_skipped:
    input:
        generated_images,
    output:
        LISTING_SKIPPED,
    log:
        "logs/listing_skipped.log",
    benchmark:
        "benchmarks/listing_skipped.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(500),
        runtime=attempt_scaled(5),
    params:
        entries=skipped_entries,
    script:
        "../scripts/listing_skipped.py"


# Makes cache/ingest/{shard}.jsonl: each listed file's digest (the image_id), size and decode check.
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
        mem_mb=attempt_scaled(1000),
        runtime=attempt_scaled(30),
    params:
        **stage_params("ingest"),
    script:
        "../scripts/ingest.py"
