import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)
from shardlens.demo import generate_demo

generate_demo(snakemake.output[0])
