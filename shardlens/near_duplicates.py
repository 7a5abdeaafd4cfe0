"""Near-duplicate images: a perceptual hash per image and groups of images whose hashes are close.

Exact duplicates (the same bytes) are already one image (one ``image_id``). Near-duplicates are
different files of what a person sees as the same picture: resized, re-encoded, lightly edited.

**The hash** (:func:`perceptual_hash`) is imagehash's ``phash`` (pinned in pyproject.toml): the
image, EXIF-oriented as ingest decodes it, converted to grey, resized to 32x32, its 2-D DCT, and
the 8x8 lowest frequencies compared with their median: 64 bits, written as 16 hex digits. The
ingest stage records it (``phash`` in the ingest record): a function of the file alone; null
when the image does not decode or cannot be hashed.

**The groups** (:func:`group_hashes`): two images are near-duplicates when their hashes differ in
at most ``dedupe.max_distance`` of the 64 bits (Hamming distance). A group is a **connected
component** of that relation (single linkage): A~B and B~C puts A, B and C in one group even when
A and C differ by more. Components do not depend on the order in which images or shards come,
and the group's id is its smallest ``image_id`` (its *representative*). The catalog's
``near_duplicates`` table (:data:`NEAR_DUPLICATES_DDL`) holds one row per image in a group of
two or more images.

**Finding the close pairs without comparing every pair** (:func:`close_pairs`): the 64 bits are
cut into ``m`` chunks of nearly equal width. Two hashes that differ in at most ``d`` bits differ
in at most ``d`` chunks, so they agree exactly on at least ``m - d`` chunks (pigeonhole): on one
of the ``C(m, m - d)`` combinations of ``m - d`` chunks. For each combination, the hashes are
sorted by those bits; only hashes equal there are candidates, and each candidate pair is checked
in full. ``m = d + 1`` is the textbook split (a pair shares one chunk exactly), but with chunks
of 64/7 = 9 bits a million random hashes put ~2,000 in each bucket; more, narrower chunks
combined into wider keys give far fewer candidates for a few more sorts. :func:`chunk_plan`
picks ``m`` by an estimate of sorts plus candidates for the number of hashes. The cost is
``O(keys * N log N + candidates)``, never ``N^2`` for hashes that are not near each other
(``bench/near_duplicates_scale.py`` prints the figures). A catalog update that only adds images
compares the loaded shards' images with all and joins the pairs to the known groups
(:func:`refresh_near_duplicates`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from bisect import bisect_left
from itertools import combinations

import numpy as np

# What the ingest stage's records hold in ``phash``: the ingest rule's param (so a change of the
# method re-runs ingest) and the manifest's record of it.
PHASH_METHOD = "imagehash 4.3.2 phash, hash_size 8 (64 bits, 16 hex digits)"
BITS = 64

NEAR_DUPLICATES_DDL = (
    # one row per image in a group of at least two images (an image alone has no row)
    """CREATE TABLE IF NOT EXISTS near_duplicates (
    image_id TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    distance INTEGER NOT NULL,
    group_size INTEGER NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS near_duplicates_group ON near_duplicates(group_id)",
)


def require_hasher() -> None:
    """Import the hash's libraries (imagehash, and scipy for its DCT), so that a missing install
    fails the ingest job at its start with the reason, rather than every file with a null hash.
    Not at this module's import: the driver environment imports it without them."""
    try:
        import imagehash  # noqa: F401
        import scipy.fftpack  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"the ingest stage's perceptual hash needs imagehash and scipy ({exc}): install the pinned packages "
            "(`make setup`, or pip install -e .; envs/core.yaml for conda)"
        ) from exc


def perceptual_hash(image) -> str | None:
    """The 64-bit perceptual hash of a decoded PIL image as 16 hex digits, or None when it cannot
    be computed (a mode the grey conversion refuses, e.g. CIELab; a decoder error on load)."""
    import imagehash

    try:
        value = str(imagehash.phash(image, hash_size=8))
    except (ValueError, OSError, TypeError, MemoryError):  # this image only: everything else about it is kept
        return None
    return value if len(value) == 16 else None


def hamming(a: str, b: str) -> int:
    """Bits in which two hex hashes differ."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def hashes_to_array(hexes: list[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def _chunks(m: int) -> list[tuple[int, int]]:
    """m contiguous chunks (first bit, width) covering the 64 bits, widths differing by at most one."""
    chunks, start = [], 0
    for i in range(m):
        width = BITS // m + (1 if i < BITS % m else 0)
        chunks.append((start, width))
        start += width
    return chunks


def chunk_plan(n: int, max_distance: int) -> tuple[int, list[list[tuple[int, int]]]]:
    """(m, the keys) for ``n`` hashes and a distance of at most ``max_distance``: each key is
    m - d of the m chunks (their (first bit, width)); m minimises an estimate of sorting n hashes
    per key plus checking the pairs random hashes would share a key by chance."""
    d = max_distance
    best = None
    for m in range(d + 1, min(BITS, d + 9) + 1):
        widths = sorted(width for _, width in _chunks(m))
        keys = math.comb(m, m - d)
        key_bits = sum(widths[: m - d])
        cost = keys * (n * max(1.0, math.log2(max(n, 2))) + 4.0 * n * n / 2.0 ** (key_bits + 1))
        if best is None or cost < best[0]:
            best = (cost, m)
    m = best[1]
    chunks = _chunks(m)
    return m, [[chunks[i] for i in combo] for combo in combinations(range(m), m - d)]


def _key(hashes: np.ndarray, chunks: list[tuple[int, int]]) -> np.ndarray:
    """The bits of ``chunks`` of each hash packed together, in the smallest unsigned type (a key
    of 16 bits or fewer sorts by radix)."""
    key = np.zeros(hashes.shape[0], dtype=np.uint64)
    offset = 0
    for start, width in chunks:
        key |= ((hashes >> np.uint64(start)) & np.uint64((1 << width) - 1)) << np.uint64(offset)
        offset += width
    return key.astype(np.uint16 if offset <= 16 else np.uint32 if offset <= 32 else np.uint64)


def close_pairs(hashes: np.ndarray, max_distance: int, new: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, distance) with i < j for every pair of ``hashes`` (uint64) within ``max_distance``
    bits, each pair once, sorted by (i, j). ``new`` (booleans, one per hash): only the pairs with
    at least one new hash, looking only into the runs that hold one (an update compares what it
    brings with everything, not everything with everything again).

    For each key: the hashes sorted by it; within each run of equal keys, each hash is compared
    with each later one (in sorted order, so the reads are contiguous), and only the pairs within
    the distance are mapped back to their indexes."""
    n = hashes.shape[0]
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    if n < 2 or max_distance < 0:
        return empty
    _, keys = chunk_plan(n, max_distance)
    found = []
    positions = np.arange(n)
    for chunks in keys:
        key = _key(hashes, chunks)
        order = np.argsort(key, kind="stable")
        sorted_key, sorted_hashes = key[order], hashes[order]
        boundary = np.ones(n, dtype=bool)
        boundary[1:] = sorted_key[1:] != sorted_key[:-1]
        starts = np.flatnonzero(boundary)
        ends = np.append(starts[1:], n)
        run_end = np.repeat(ends, ends - starts)
        later = run_end - positions > 1  # positions with a later one in their run
        if new is not None:
            sorted_new = new[order]
            later &= np.repeat(np.add.reduceat(sorted_new.astype(np.int64), starts) > 0, ends - starts)
        active = np.flatnonzero(later)
        k = 1
        while active.size:
            near = np.bitwise_count(sorted_hashes[active] ^ sorted_hashes[active + k]) <= max_distance
            if new is not None:
                near &= sorted_new[active] | sorted_new[active + k]
            if near.any():
                i, j = order[active[near]], order[active[near] + k]
                found.append(np.minimum(i, j).astype(np.int64) * n + np.maximum(i, j))
            k += 1
            active = active[run_end[active] - active > k]
    if not found:
        return empty
    codes = np.unique(np.concatenate(found))
    i, j = codes // n, codes % n
    return i, j, np.bitwise_count(hashes[i] ^ hashes[j]).astype(np.int64)


def group_hashes(
    image_ids: list[str],
    hexes: list[str],
    max_distance: int,
    new_ids: set[str] | None = None,
    known_groups: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str, int, int]]:
    """The near-duplicate groups of some images: (image_id, group_id, distance to the group's
    representative, group size) for each image in a group of two or more, sorted by image_id.
    ``image_ids`` are distinct; the result does not depend on their order.

    An update: ``known_groups`` ((image_id, group_id) of the groups computed before, all of
    whose images are still among ``image_ids``) and ``new_ids`` (every image added since, and
    maybe some that were there): only pairs with a new image are looked for, and the known groups
    are joined to them. The result equals grouping everything again, since the close pairs among
    the other images are the ones the known groups were made of."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    order = sorted(range(len(image_ids)), key=image_ids.__getitem__)
    ids = [image_ids[k] for k in order]
    hashes = hashes_to_array([hexes[k] for k in order])
    new = None if new_ids is None else np.array([i in new_ids for i in ids], dtype=bool)
    i, j, _ = close_pairs(hashes, max_distance, new)
    if known_groups:  # each known member linked to its representative (ids are sorted: bisect)
        i = np.concatenate([i, np.array([bisect_left(ids, m) for m, _ in known_groups], dtype=np.int64)])
        j = np.concatenate([j, np.array([bisect_left(ids, g) for _, g in known_groups], dtype=np.int64)])
    if i.size == 0:
        return []
    n = len(ids)
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    representative = np.full(component.max() + 1, n, dtype=np.int64)
    np.minimum.at(representative, component, np.arange(n))  # ids are sorted: the smallest index is the smallest id
    size = np.bincount(component)
    members = np.flatnonzero(size[component] > 1)
    rep = representative[component[members]]
    distance = np.bitwise_count(hashes[members] ^ hashes[rep]).astype(np.int64)
    return [(ids[m], ids[r], int(dist), int(size[component[m]])) for m, r, dist in zip(members, rep, distance)]


# ----------------------------------------------------------------------------------- catalog


def distance_setting(conn: sqlite3.Connection, given, recorded: str) -> int | None:
    """The grouping distance: ``given``, or with ``recorded`` (propagation.RECORDED) the one the
    catalog recorded, else the schema's default (``dedupe.max_distance``); recorded in the
    catalog's ``propagation_settings``, so review imports and the dashboard keep it."""
    if given == recorded:
        row = conn.execute("SELECT value FROM propagation_settings WHERE name = 'near_duplicate_max_distance'").fetchone()
        if row is not None:
            return None if row[0] is None else int(row[0])
        from .config import schema_default

        given = schema_default("dedupe", "max_distance")
    conn.execute("INSERT OR REPLACE INTO propagation_settings (name, value) VALUES ('near_duplicate_max_distance', ?)", (given,))
    return None if given is None else int(given)


def has_near_duplicates(conn: sqlite3.Connection) -> bool:
    """Whether the catalog has the near_duplicates table (one built before it has not)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'near_duplicates'").fetchone() is not None


_HASHED = "FROM paths WHERE status = 'ok' AND image_id IS NOT NULL AND phash IS NOT NULL"


def refresh_near_duplicates(conn: sqlite3.Connection, max_distance: int | None, loaded_shards: list[str], full: bool = False) -> int:
    """Bring ``near_duplicates`` up to date with the catalog's hashes (inside the caller's
    transaction); return the number of images in groups. ``None`` empties it.

    Nothing to do when no shard was loaded and the distance is the one the table was computed
    with. An update that only adds images (``loaded_shards``; every image of the table still
    there) compares the loaded shards' images with all (:func:`group_hashes` with the known
    groups); ``full`` (a rebuild, removed shards), another distance, or a grouped image gone
    groups everything again. Either way the table is what grouping everything gives."""
    computed = conn.execute("SELECT value FROM propagation_settings WHERE name = 'near_duplicates_computed_with'").fetchone()
    marker = -1 if max_distance is None else max_distance
    same_distance = computed is not None and computed[0] == marker
    if same_distance and not full and not loaded_shards:
        return conn.execute("SELECT COUNT(*) FROM near_duplicates").fetchone()[0]
    conn.execute("INSERT OR REPLACE INTO propagation_settings (name, value) VALUES ('near_duplicates_computed_with', ?)", (marker,))
    if max_distance is None:
        conn.execute("DELETE FROM near_duplicates")
        return 0
    rows = conn.execute(f"SELECT image_id, MIN(phash) {_HASHED} GROUP BY image_id").fetchall()
    ids = [r[0] for r in rows]
    new_ids = known = None
    if same_distance and not full:
        known = conn.execute("SELECT image_id, group_id FROM near_duplicates").fetchall()
        present = set(ids)
        if all(m in present for m, _ in known):
            new_ids = {
                i for (i,) in conn.execute(f"SELECT DISTINCT image_id {_HASHED} AND shard IN (SELECT value FROM json_each(?))", (json.dumps(sorted(loaded_shards)),))
            }  # fmt: skip
        else:
            known = None
    groups = group_hashes(ids, [r[1] for r in rows], max_distance, new_ids=new_ids, known_groups=known)
    conn.execute("DELETE FROM near_duplicates")
    conn.executemany("INSERT INTO near_duplicates (image_id, group_id, distance, group_size) VALUES (?, ?, ?, ?)", groups)
    return len(groups)


def group_of(conn: sqlite3.Connection, image_id: str, limit: int | None = None) -> list[dict]:
    """The near-duplicate group of one image: every member (the image itself too; at most
    ``limit``) with its distance to the representative and the group's size, the representative
    first, then by distance; [] when it is in none or the catalog has no groups table."""
    if not has_near_duplicates(conn):
        return []
    rows = conn.execute(
        """
        SELECT n.image_id, n.group_id, n.distance, n.group_size
        FROM near_duplicates n
        WHERE n.group_id = (SELECT g.group_id FROM near_duplicates g WHERE g.image_id = ?)
        ORDER BY n.image_id != n.group_id, n.distance, n.image_id LIMIT ?
        """,
        (image_id, -1 if limit is None else int(limit)),
    ).fetchall()
    return [dict(zip(("image_id", "group_id", "distance", "group_size"), tuple(r))) for r in rows]
