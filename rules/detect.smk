# Detection: regions with the detector's own label candidates per image (a GPU stage on
# clusters), then the ontology applied to them (cheap, per shard): editing the ontology re-runs
# `regions` and what follows, never `detect` (docs/adr/0009-ontology.md).


# Makes cache/detect/{shard}.jsonl: the detector's regions with its own label candidates.
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
        mem_mb=attempt_scaled(4000),
        runtime=attempt_scaled(60),
        gpu=1,
    params:
        **stage_params("detect"),
        model=model_fingerprint("detect"),
    script:
        "../scripts/detect.py"


# Makes cache/regions/{shard}.jsonl: the detections with the ontology's classes (or the vocabulary's).
rule regions:
    input:
        detect=f"{CACHE}/detect/{{shard}}.jsonl",
    output:
        f"{CACHE}/regions/{{shard}}.jsonl",
    log:
        "logs/regions/{shard}.log",
    benchmark:
        "benchmarks/regions/{shard}.tsv"
    conda:
        "../envs/torch.yaml"  # the detect.vocabulary shorthand maps classes with MiniLM (onnxruntime)
    threads: 1
    resources:
        mem_mb=attempt_scaled(1000),
        runtime=attempt_scaled(10),
    params:
        **stage_params("regions"),
        model=model_fingerprint("regions"),
    script:
        "../scripts/regions.py"
