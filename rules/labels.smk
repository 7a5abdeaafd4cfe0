# Machine labels over all shards (HDBSCAN clusters of the texts), the annotation exports, and the
# re-import of reviewed annotation sheets.


rule cluster:
    input:
        embedding_outputs,
    output:
        f"{CACHE}/clusters.jsonl",
    log:
        "logs/cluster.log",
    benchmark:
        "benchmarks/cluster.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=attempt_scaled(4000),
        runtime=attempt_scaled(60),
    params:
        **stage_params("clusters"),
    script:
        "../scripts/cluster.py"


# The Parquet export is a dataset folder, results/annotations.parquet/shard=<shard>/part-0.parquet,
# of which a run rewrites only the partitions whose rows changed. Snakemake deletes declared
# outputs before a job, so the folder is not one: the declared output is its manifest
# (docs/adr/0007-partitioned-parquet-export.md).
rule export:
    input:
        db=DATABASE,
        reviews=existing_reviews_store,
    output:
        **EXPORT_OUTPUTS,
    log:
        "logs/export.log",
    benchmark:
        "benchmarks/export.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(2000),
        runtime=attempt_scaled(30),
    params:
        label_studio_url_prefix=config["export"]["label_studio_url_prefix"],
        # the script reads the whole config; these are here so that changing them re-exports
        coco_labels=config["export"]["coco_labels"],
        formats=config["export"]["formats"],
        images=config["images"],
        labels=label_space(config),  # the ontology's classes (or the vocabulary): the first categories
    script:
        "../scripts/export.py"


rule import_reviews:
    input:
        csv=review_csv_to_import,
        db=DATABASE,
    output:
        "results/review_imports/{name}.json".format(name=review_import_name()),
    log:
        "logs/import_reviews.log",
    benchmark:
        "benchmarks/import_reviews.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(1000),
        runtime=attempt_scaled(10),
    params:
        store=REVIEWS_DB,
    script:
        "../scripts/import_reviews.py"
