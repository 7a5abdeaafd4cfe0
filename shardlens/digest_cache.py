"""Digests of cache files, remembered by size and mtime, so a run re-reads only what changed.

The manifest rule digests every per-shard file of every stage; at a million images that is
gigabytes read for one changed shard. :class:`DigestCache` keeps, per path, the size and
``st_mtime_ns`` it saw with the sha256, the line count and the file's share of the dataset digest
(:func:`dataset_share`). A file whose size and mtime are unchanged is not opened again: the same
rule Snakemake itself applies to decide what is out of date. The cache is a SQLite file in the
manifest history folder (``cache/manifests/digests.sqlite``), not a declared output; deleting it
costs one full read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .records import file_digest, read_jsonl
from .sqlite_connect import connect_writer

_MOD = 1 << 256
# the cache's file in the manifest history folder (cache/manifests/, the manifest rule's param)
DIGESTS_FILE = "digests.sqlite"


def dataset_share(ingest_file: str | Path) -> int:
    """One shard's part of the dataset digest: the sum, modulo 2**256, of the sha256 of each
    readable file's ``image_id<TAB>path`` line. Sums add up across shards in any order, so the
    dataset digest does not depend on how the images are sharded, and one shard's change costs
    reading that shard only."""
    total = 0
    for record in read_jsonl(ingest_file, "ingest", validate=False):
        if record["image_id"] is not None:
            line = f"{record['image_id']}\t{record['path']}\n".encode("utf-8", "surrogateescape")
            total += int.from_bytes(hashlib.sha256(line).digest(), "big")
    return total % _MOD


def combine_shares(shares: list[int]) -> str:
    """The dataset digest from the shards' shares (hex, 64 characters)."""
    return f"{sum(shares) % _MOD:064x}"


class DigestCache:
    """``(sha256, lines)`` and the dataset share of cache files, re-read only when changed.
    ``read_only``: look up what the manifest rule learnt, learn nothing (the catalog verifies the
    files it is given against the manifest this way); a missing file is an empty cache."""

    def __init__(self, path: str | Path | None, read_only: bool = False):
        self.conn = None
        self.read_only = read_only
        if path is not None and read_only:
            if Path(path).exists():  # a writer's connection that writes nothing: the last to close
                self.conn = connect_writer(path)  # removes the -wal and -shm files, a reader's cannot
        elif path is not None:
            self.conn = connect_writer(path)
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, "
                "sha256 TEXT NOT NULL, lines INTEGER NOT NULL, share TEXT)"
            )
            self.conn.execute("BEGIN")
        self.read = 0
        self.reused = 0

    def _lookup(self, path: Path, stat: os.stat_result) -> tuple | None:
        if self.conn is None:
            return None
        row = self.conn.execute("SELECT size, mtime_ns, sha256, lines, share FROM digests WHERE path = ?", (str(path.resolve()),)).fetchone()
        if row is None or (row[0], row[1]) != (stat.st_size, stat.st_mtime_ns):
            return None
        return row[2:]

    def _store(self, path: Path, stat: os.stat_result, sha: str, lines: int, share: int | None) -> None:
        if self.conn is not None and not self.read_only:
            self.conn.execute(
                "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?)",
                (str(path.resolve()), stat.st_size, stat.st_mtime_ns, sha, lines, None if share is None else f"{share:064x}"),
            )

    def digest(self, path: str | Path) -> tuple[str, int]:
        """``(sha256, lines)`` of a file, as :func:`records.file_digest` gives it."""
        path = Path(path)
        stat = path.stat()
        known = self._lookup(path, stat)
        if known is not None:
            self.reused += 1
            return known[0], known[1]
        self.read += 1
        sha, lines = file_digest(path)
        self._store(path, stat, sha, lines, None)
        return sha, lines

    def share(self, ingest_file: str | Path) -> int:
        """The ingest file's :func:`dataset_share`."""
        path = Path(ingest_file)
        stat = path.stat()
        known = self._lookup(path, stat)
        if known is not None and known[2] is not None:
            return int(known[2], 16)
        sha, lines = known[:2] if known is not None else file_digest(path)
        share = dataset_share(path)
        self._store(path, stat, sha, lines, share)
        return share

    def close(self) -> None:
        """Keep what was learnt (a failed run keeps nothing: the next one reads again)."""
        if self.conn is not None:
            if not self.read_only:
                self.conn.execute("COMMIT")
            self.conn.close()
            self.conn = None
