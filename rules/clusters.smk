# Clusters over all shards: HDBSCAN groups of the texts' embeddings, with readable names
# (shardlens/cluster_fit.py), which reviewers accept or relabel in one go.


# Makes cache/clusters.jsonl: the clusters of all shards' texts, with names and outlier scores.
# Between runs the job keeps its state beside that output (cache/clusters.state.sqlite,
# shardlens/cluster_state.py), which it reads and updates: neither an input (the job updates it)
# nor an output (Snakemake would delete it before the job, and with it what makes a run incremental).
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
