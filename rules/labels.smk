# Machine labels over all shards (HDBSCAN clusters of the texts), the annotation exports, and the
# re-import of reviewed annotation sheets.


rule cluster:
    input:
        shard_outputs("embed"),
    output:
        f"{CACHE}/clusters.jsonl",
    params:
        options=config["labels"],
    conda:
        "../envs/torch.yaml"
    log:
        "logs/cluster.log",
    benchmark:
        "benchmarks/cluster.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../scripts/cluster.py"


rule export:
    input:
        db=DATABASE,
        reviews=existing_reviews_store,
    output:
        csv="results/annotations.csv",
        json="results/annotations.json",
        parquet="results/annotations.parquet",
        labelstudio="results/labelstudio_tasks.json",
    conda:
        "../envs/torch.yaml"
    log:
        "logs/export.log",
    benchmark:
        "benchmarks/export.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/export.py"


rule import_reviews:
    input:
        csv=review_csv_to_import,
        db=DATABASE,
    output:
        "results/review_imports/{name}.json".format(name=review_import_name()),
    params:
        store=REVIEWS_DB,
    conda:
        "../envs/core.yaml"
    log:
        "logs/import_reviews.log",
    benchmark:
        "benchmarks/import_reviews.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/import_reviews.py"
