"""Adapter for caches written just before cluster members carried an outlier score.

That layout is the current one less one optional field, the cluster members' ``outlier_score``
(HDBSCAN's GLOSH, ``contracts/cluster.schema.json``): every record reads as it is, and the
upgraded records are still validated against the current schemas. The catalog stores such a
member with a NULL ``outlier_score``; its risk's outlier part is then 1 - membership probability,
what it was when the cache was written (:mod:`shardlens.risk`). The workflow writes the scores
on its next run: the clusters stage's params name the method (``labels.OUTLIER_SCORE_METHOD``),
so the cluster rule runs again, and the manifest then carries the current schema hash.
"""

from __future__ import annotations

from .base import CacheAdapter

# schema_hash() of the contracts as they were before outlier_score (commit 97e91bc)
PRE_OUTLIER_SCORES_SCHEMA_HASH = "5cc7482ad021f6a8046314cd25438d48084e7536c86e20a29ea934d6cd28a09a"


class PreOutlierScoresAdapter(CacheAdapter):
    name = "pre-outlier-scores"
    schema_hash = PRE_OUTLIER_SCORES_SCHEMA_HASH
    description = "cache written before cluster members had outlier scores (schema_version 1)"

    def upgrade(self, kind: str, record: dict) -> dict | None:
        return record
