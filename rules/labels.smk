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
        mem_mb=4000,
        runtime=60,
    params:
        options=config["labels"],
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
    log:
        "logs/export.log",
    benchmark:
        "benchmarks/export.tsv"
    conda:
        "../envs/torch.yaml"
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
    log:
        "logs/import_reviews.log",
    benchmark:
        "benchmarks/import_reviews.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        store=REVIEWS_DB,
    script:
        "../scripts/import_reviews.py"
