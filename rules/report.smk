# The results section of `snakemake --report results/report.html`: figures of the catalog and of
# the jobs' timings (matplotlib), and the ingest report as a table. Captions: report/*.rst.


# Makes results/report/: figures from the catalog and the shards' job records, and the ingest
# report as HTML.
rule report_figures:
    input:
        db=DATABASE,
        ingest_report=INGEST_REPORT,
        listing_skipped=LISTING_SKIPPED,
        shard_jobs=shard_job_records,
    output:
        gate_scores=report(
            "results/report/gate_scores.png",
            caption="../report/gate_scores.rst",
            category="Text gate",
            labels={"figure": "gate scores"},
        ),
        detections_per_class=report(
            "results/report/detections_per_class.png",
            caption="../report/detections_per_class.rst",
            category="Detection",
            labels={"figure": "detections per class"},
        ),
        cluster_sizes=report(
            "results/report/cluster_sizes.png",
            caption="../report/cluster_sizes.rst",
            category="Clusters",
            labels={"figure": "cluster sizes"},
        ),
        largest_clusters=report(
            "results/report/largest_clusters.png",
            caption="../report/largest_clusters.rst",
            category="Clusters",
            labels={"figure": "20 largest clusters"},
        ),
        ocr_confidence=report(
            "results/report/ocr_confidence.png",
            caption="../report/ocr_confidence.rst",
            category="OCR",
            labels={"figure": "OCR confidence"},
        ),
        stage_seconds=report(
            "results/report/stage_seconds.png",
            caption="../report/stage_seconds.rst",
            category="Run time",
            labels={"figure": "seconds per image per stage"},
        ),
        ingest_table=report(
            "results/report/ingest_report.html",
            caption="../report/ingest_table.rst",
            category="Ingest",
            labels={"figure": "ingest report"},
        ),
    log:
        "logs/report_figures.log",
    benchmark:
        "benchmarks/report_figures.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(1000),
        runtime=attempt_scaled(10),
    params:
        gate_threshold=config["gate"]["score_threshold"],
    script:
        "../scripts/report_figures.py"
