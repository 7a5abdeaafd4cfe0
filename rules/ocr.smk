# Text gate (cheap text detection) and OCR of the images it lets through.


rule gate:
    input:
        ingest=f"{CACHE}/ingest/{{shard}}.jsonl",
    output:
        f"{CACHE}/gate/{{shard}}.jsonl",
    params:
        images=config["images"],
        limits=config["limits"],
        options=config["gate"],
        model=model_fingerprint("gate"),
    log:
        "logs/gate/{shard}.log",
    benchmark:
        "benchmarks/gate/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/gate.py"


rule ocr:
    input:
        ingest=f"{CACHE}/ingest/{{shard}}.jsonl",
        gate=f"{CACHE}/gate/{{shard}}.jsonl",
    output:
        f"{CACHE}/ocr/{{shard}}.jsonl",
    params:
        images=config["images"],
        limits=config["limits"],
        options=config["ocr"],
        model=model_fingerprint("ocr"),
    log:
        "logs/ocr/{shard}.log",
    benchmark:
        "benchmarks/ocr/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=3000,
        runtime=60,
    script:
        "../scripts/ocr.py"
