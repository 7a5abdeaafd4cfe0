# Text gate (cheap text detection) and OCR of the images it lets through.


# Makes cache/gate/{shard}.jsonl: per distinct image, whether OCR runs (a cheap text detector's score).
rule gate:
    input:
        ingest=f"{CACHE}/ingest/{{shard}}.jsonl",
    output:
        f"{CACHE}/gate/{{shard}}.jsonl",
    log:
        "logs/gate/{shard}.log",
    benchmark:
        "benchmarks/gate/{shard}.tsv"
    conda:
        "../envs/ocr.yaml"
    threads: 2
    resources:
        mem_mb=attempt_scaled(2000),
        runtime=attempt_scaled(30),
    params:
        **stage_params("gate"),
        model=model_fingerprint("gate"),
    script:
        "../scripts/gate.py"


# Makes cache/ocr/{shard}.jsonl: the text lines of the images the gate let through.
rule ocr:
    input:
        ingest=f"{CACHE}/ingest/{{shard}}.jsonl",
        gate=f"{CACHE}/gate/{{shard}}.jsonl",
    output:
        f"{CACHE}/ocr/{{shard}}.jsonl",
    log:
        "logs/ocr/{shard}.log",
    benchmark:
        "benchmarks/ocr/{shard}.tsv"
    conda:
        ocr_environment()
    threads: 2
    resources:
        mem_mb=attempt_scaled(4000),
        runtime=attempt_scaled(60),
    params:
        **stage_params("ocr"),
        model=model_fingerprint("ocr"),
    script:
        "../scripts/ocr.py"
