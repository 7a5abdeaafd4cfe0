# Detection: regions, label candidates and captions per image. A GPU stage on clusters.


rule detect:
    input:
        ingest=f"{CACHE}/ingest/{{shard}}.jsonl",
    output:
        f"{CACHE}/detect/{{shard}}.jsonl",
    log:
        "logs/detect/{shard}.log",
    benchmark:
        "benchmarks/detect/{shard}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=1,
    params:
        **stage_params("detect"),
        model=model_fingerprint("detect"),
    script:
        "../scripts/detect.py"
