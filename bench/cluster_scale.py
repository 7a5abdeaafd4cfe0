"""Embedding + clustering cost for many short texts: time and peak memory of each step.

Texts are generated (short captions and sign-like phrases from a word list, with repeats like a
real collection), embedded with all-MiniLM-L6-v2 and clustered exactly as the cluster rule does.

    python bench/cluster_scale.py --texts 10000 100000 [--append]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_common_args, command_line, emit, log, wait_for_quiet  # noqa: E402

WORKER = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
from shardlens.cluster_fit import TextPoint, build_clusters, cluster_points
from shardlens.models.text_embedder import make_text_embedder
from shardlens.options import EmbedOptions

n = {n}
rng = np.random.default_rng(7)
nouns = "person car cat dog cup bottle chair table sign street door window tree bus truck bike phone book clock lamp".split()
adjs = "red blue green old new big small open closed main north south east west".split()
words = "open hours exit sale today parking station coffee bakery market hotel pharmacy bank museum library school".split()
texts = []
for i in range(n):
    r = rng.random()
    if r < 0.5:
        texts.append(f"{{rng.choice(adjs)}} {{rng.choice(nouns)}}")
    else:
        k = rng.integers(2, 5)
        texts.append(" ".join(rng.choice(words, size=k)) + f" {{rng.integers(0, 100000)}}")
distinct = sorted(set(texts))
counts = {{t: 0 for t in distinct}}
for t in texts:
    counts[t] += 1
t0 = time.perf_counter()
embedder = make_text_embedder(EmbedOptions.from_values(), threads=2)
load_s = time.perf_counter() - t0
t0 = time.perf_counter()
vectors = embedder.encode(distinct)
embed_s = time.perf_counter() - t0
points = [TextPoint(t, {{"ocr"}}, counts[t], v) for t, v in zip(distinct, vectors)]
t0 = time.perf_counter()
labels, probs = cluster_points(points, min_cluster_size=2, min_samples=1, pca_dims=32, threads=2)
records = build_clusters(points, labels, probs)
cluster_s = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"texts": n, "distinct": len(distinct), "load_s": load_s, "embed_s": embed_s,
                  "cluster_s": cluster_s, "clusters": sum(r["cluster_id"] >= 0 for r in records),
                  "unclustered": sum(len(r["members"]) for r in records if r["cluster_id"] < 0),
                  "peak_rss_mb": peak_mb}}))
"""


def measure(n: int) -> dict:
    import json

    proc = subprocess.run([sys.executable, "-c", WORKER.format(repo=str(REPO), n=n)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, nargs="+", default=[10_000, 100_000])
    add_common_args(parser)
    args = parser.parse_args()
    load_before = wait_for_quiet(args.max_load, args.max_wait)
    lines = [
        "Each size in its own process (threads=2, embed batch 256); peak RSS = that process's ru_maxrss. "
        "Clustering = PCA to 32 dims + HDBSCAN + c-TF-IDF labels, as the cluster rule runs it.",
        "",
        "| texts | distinct | model load (s) | embed (s) | texts/s | cluster (s) | clusters | unclustered | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in args.texts:
        log(f"{n:,} texts")
        r = measure(n)
        lines.append(
            f"| {r['texts']:,} | {r['distinct']:,} | {r['load_s']:.1f} | {r['embed_s']:.1f} | {r['distinct'] / r['embed_s']:.0f} | "
            f"{r['cluster_s']:.1f} | {r['clusters']:,} | {r['unclustered']:,} | {r['peak_rss_mb']:.0f} |"
        )
        log(lines[-1])
    emit("Embedding and clustering at scale", command_line(), load_before, lines, append=args.append)


if __name__ == "__main__":
    main()
