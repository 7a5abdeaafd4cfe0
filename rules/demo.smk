# The embedded demo set: generated from photos that installed packages ship plus rendered text,
# so the repository vendors no images. A checkpoint, because the listing depends on its files.


# Makes the demo images (resources/demo) and their ground truth.
checkpoint demo_images:
    output:
        directory(DEMO_DIR),
    log:
        "logs/demo_images.log",
    benchmark:
        "benchmarks/demo_images.tsv"
    conda:
        "../envs/core.yaml"
    threads: 1
    resources:
        mem_mb=attempt_scaled(1000),
        runtime=attempt_scaled(10),
    script:
        "../scripts/demo_images.py"
