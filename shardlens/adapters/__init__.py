"""Compatibility adapters: reading caches written by older releases.

The catalog reads a cache through the adapter registered for its manifest's ``schema_hash``
(``shardlens.catalog.SCHEMA_ADAPTERS``): ``None`` for the current contracts, else one
:class:`CacheAdapter` per older version. An adapter upgrades the manifest and every record to the
current shapes; the upgraded records are validated against the current JSON Schemas, so the
loader downstream knows a single layout. A cache whose hash has no adapter is refused.
"""

from __future__ import annotations

from .base import CacheAdapter
from .phase1 import Phase1Adapter
from .pre_outlier_scores import PreOutlierScoresAdapter

__all__ = ["CacheAdapter", "known_adapters"]


def known_adapters() -> list[CacheAdapter]:
    """Every adapter this release ships, oldest first."""
    return [Phase1Adapter(), PreOutlierScoresAdapter()]
