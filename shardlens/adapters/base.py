"""The base class of the compatibility adapters (kept apart from the package's registry, which
imports the adapters, so each adapter imports only this module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..records import read_jsonl, validate_record


class CacheAdapter:
    """Upgrades one older cache version to the current record shapes."""

    name: str = ""  # short name used in messages, e.g. "phase1"
    schema_hash: str = ""  # the schema_hash that version's manifests carry
    description: str = ""  # one line: which release wrote it

    def upgrade_manifest(self, manifest: dict) -> dict:
        """The manifest in the current layout (``shards`` -> stage -> {file, sha256, records})."""
        return manifest

    def upgrade(self, kind: str, record: dict) -> dict | None:
        """One record of ``kind`` (current record kind) in the current shape; None drops it."""
        raise NotImplementedError

    def read(self, path: str | Path, kind: str) -> Iterator[dict]:
        """Records of a cache file of this version, upgraded and validated."""
        for line_no, record in enumerate(read_jsonl(path, kind, validate=False), start=1):
            upgraded = self.upgrade(kind, record)
            if upgraded is None:
                continue
            validate_record(kind, upgraded, where=f"{path} line {line_no} (read through the {self.name} adapter)")
            yield upgraded
