"""The cluster rule: bring the clusters of all shards' texts up to date and write them.

The fits (HDBSCAN over the embeddings, outlier scores, readable names) are
:mod:`shardlens.cluster_fit`'s; the state kept between runs, which decides whether to refit or to
assign the new texts to the clusters of the last fit, is :mod:`shardlens.cluster_state`'s.
"""

from __future__ import annotations

from pathlib import Path

from .cluster_state import update_clusters
from .jobs import JobSummary
from .records import write_jsonl


def run_clustering(embed_files: list[str | Path], output: str | Path, options: dict, threads: int = 1, log=print, refit: str | None = None) -> dict:
    """The cluster rule: update the clusters incrementally (:mod:`shardlens.cluster_state`,
    ``labels.refit``) and write them to ``output``."""
    summary = JobSummary(shard="all", stage="cluster")
    records, info = update_clusters(embed_files, output, options, threads=threads, log=log, refit=refit)
    write_jsonl(output, "cluster", records)
    members = [m for r in records for m in r["members"]]
    stats = {
        "texts": len(members),
        "clusters": sum(1 for r in records if r["cluster_id"] >= 0),
        "unclustered_texts": sum(len(r["members"]) for r in records if r["cluster_id"] < 0),
        "assigned_texts": sum(1 for m in members if m["membership"] == "assigned"),
        "refit": info.refit,
        "refit_reason": info.reason,
        "embedding_files_read": info.files_read,
    }
    log(f"cluster: {stats['texts']} distinct texts -> {stats['clusters']} clusters, {stats['unclustered_texts']} unclustered")
    summary.records = len(records)
    summary.ok = stats["texts"] - stats["unclustered_texts"]
    summary.skipped = stats["unclustered_texts"]
    summary.extra = stats
    summary.finish()
    return stats
