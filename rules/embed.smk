# Embeddings of every distinct text of a shard (captions, labels, OCR lines). A GPU stage on clusters.


# Makes cache/embed/{shard}.jsonl: an embedding of each distinct text of the shard.
rule embed:
    input:
        regions=f"{CACHE}/regions/{{shard}}.jsonl",
        ocr=f"{CACHE}/ocr/{{shard}}.jsonl",
    output:
        f"{CACHE}/embed/{{shard}}.jsonl",
    log:
        "logs/embed/{shard}.log",
    benchmark:
        "benchmarks/embed/{shard}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=attempt_scaled(3000),
        runtime=attempt_scaled(30),
        gpu=1,
    params:
        **stage_params("embed"),
        model=model_fingerprint("embed"),
    script:
        "../scripts/embed.py"
