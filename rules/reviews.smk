# The re-import of a reviewed annotation sheet into the review store (shardlens/reviews.py).


# Makes results/review_imports/{name}.json: the record of a reviewed sheet read into the review store.
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
