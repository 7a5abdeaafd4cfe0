# Aggregates over all shards: the manifest (model hashes, dataset digest, file digests) and the
# SQLite catalog loaded from the cache; before them, each shard's job record.


# Makes logs/jobs/{shard}.json once a shard is done: the record of its stage jobs (images and
# seconds from each job's summary line, wall-clock seconds from its benchmark). The aggregate
# rules take these records as their inputs, one per shard, instead of every stage output, log and
# benchmark (docs/adr/0013-shard-job-records.md).
rule shard_jobs:
    input:
        listing=f"{CACHE}/shards/{{shard}}.tsv",
        outputs=expand(f"{CACHE}/{{stage}}/{{{{shard}}}}.jsonl", stage=SHARD_STAGES),
        logs=expand("logs/{stage}/{{shard}}.log", stage=SHARD_STAGES),
        benchmarks=expand("benchmarks/{stage}/{{shard}}.tsv", stage=SHARD_STAGES),
    output:
        "logs/jobs/{shard}.json",
    log:
        "logs/shard_jobs/{shard}.log",
    benchmark:
        "benchmarks/shard_jobs/{shard}.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(500),
        runtime=attempt_scaled(5),
    script:
        "../scripts/shard_jobs.py"


# Makes cache/manifest.json: digests every cache file, records each stage's params (shardlens/stages/params.py), the
# config's digest and the shard plan, then appends the manifest to cache/manifests/, the
# history `shardlens diff` compares. That folder is deliberately not an output: Snakemake
# deletes a job's outputs before it runs, and update() would copy the whole history aside
# on every run; entries are written once, atomically, and never rewritten.
rule manifest:
    input:
        shards=shard_job_records,
        clusters=f"{CACHE}/clusters.jsonl",
    output:
        f"{CACHE}/manifest.json",
    log:
        "logs/manifest.log",
    benchmark:
        "benchmarks/manifest.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(1000),
        runtime=attempt_scaled(10),
    params:
        shards=shard_names,
        shard_count=shard_count,
        models={stage: model_fingerprint(stage) for stage in SHARD_STAGES},
        history=f"{CACHE}/manifests",
        # The folder of its output, where the job digests each shard's cache files by their fixed
        # names: the one deliberate exception to "every file a job reads is an input". Its inputs
        # are the shards' job records, which have those files as inputs; declaring them all costs
        # Snakemake about 16 s per run at 2,048 shards (docs/adr/0013-shard-job-records.md).
        cache=folder_of("output", 0),
    script:
        "../scripts/manifest.py"


# Makes the catalog (catalog.database): updated in place, in one transaction: only shards whose file digests changed,
# shards gone from the plan dropped, clusters, the reviews' copy (from the review store, an input
# once someone has reviewed: a changed store refreshes the copy), the propagated labels
# (shardlens/propagation.py) and the run (a changed layout or cache schema hash rebuilds
# in full; `shardlens import-cache --full` on demand).
# Snakemake removes the output's name before the job; build_catalog gives it back from a
# hard link beside it (.annotations.sqlite.keep), not update(), which copies the whole
# database aside on every run and copies it back over the open file on failure
# (docs/adr/0005-incremental-catalog.md).
rule catalog:
    input:
        manifest=f"{CACHE}/manifest.json",
        shards=shard_job_records,
        clusters=f"{CACHE}/clusters.jsonl",
        reviews=existing_reviews_store,
    output:
        DATABASE,
    log:
        "logs/catalog.log",
    benchmark:
        "benchmarks/catalog.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(2000),
        runtime=attempt_scaled(30),
    params:
        # the store's path even before it exists (the input is empty then): no store, no reviews
        reviews=REVIEWS_DB,
        # recorded in the catalog: review imports and the dashboard propagate with it too
        propagate_similarity=config["reviews"]["propagate_similarity"],
        # recorded in the catalog too: images this close (perceptual hash bits) form a group
        near_duplicate_distance=config["dedupe"]["max_distance"],
        # The manifest's folder, from which the job loads each shard's cache files by their fixed
        # names: the same exception as the manifest's, its inputs are the shards' job records
        # (about 13 s per run at 2,048 shards otherwise; docs/adr/0013-shard-job-records.md).
        cache=folder_of("input", "manifest"),
    script:
        "../scripts/catalog.py"


# Makes results/ingest_report.csv: per file, what ingest made of it, and what the walk skipped.
rule ingest_report:
    input:
        db=DATABASE,
        listing_skipped=LISTING_SKIPPED,
    output:
        INGEST_REPORT,
    log:
        "logs/ingest_report.log",
    benchmark:
        "benchmarks/ingest_report.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(500),
        runtime=attempt_scaled(5),
    script:
        "../scripts/ingest_report.py"
