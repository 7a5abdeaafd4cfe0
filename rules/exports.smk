# The annotation exports from the catalog (and the review store once someone has reviewed):
# the Parquet dataset and the files of export.formats (shardlens/exports.py).


# Makes the annotation exports in results/ (export.formats). The Parquet export is a dataset
# folder, results/annotations.parquet/shard=<shard>/part-0.parquet, of which a run rewrites only
# the partitions whose rows changed. Snakemake deletes declared outputs before a job, so the
# folder is not one: the declared output is its manifest (docs/adr/0007-partitioned-parquet-export.md).
rule export:
    input:
        db=DATABASE,
        reviews=existing_reviews_store,
    output:
        **EXPORT_OUTPUTS,
    log:
        "logs/export.log",
    benchmark:
        "benchmarks/export.tsv"
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(2000),
        runtime=attempt_scaled(30),
    params:
        # where it writes its outputs, and the Parquet dataset beside its manifest
        out_dir=folder_of("output", "parquet_manifest"),
        label_studio_url_prefix=config["export"]["label_studio_url_prefix"],
        # the script reads the whole config; these are here so that changing them re-exports
        coco_labels=config["export"]["coco_labels"],
        formats=config["export"]["formats"],
        images=config["images"],
        labels=label_space(config),  # the ontology's classes (or the vocabulary): the first categories
    script:
        "../scripts/export.py"
