"""Near-duplicate grouping at scale: what the catalog's aggregate step costs for N images.

For each N: N random 64-bit perceptual hashes, of which ``--planted`` (a share) are copies of
another hash with 0 to ``max_distance`` bits flipped (the near pairs to find), grouped by
:func:`shardlens.near_duplicates.group_hashes` (pairs by the chunk-combination index, then
connected components). The planted pairs found are counted (all must be), and so are the pairs
found by chance. The catalog row is :func:`refresh_near_duplicates` on a real catalog
(``shardlens.catalog.connect``) holding the N images in ``paths``: reading the hashes, grouping,
writing ``near_duplicates``, in one transaction, as a catalog build does.

    python bench/near_duplicates_scale.py                       # 100,000 and 1,000,000 images
    python bench/near_duplicates_scale.py --sizes 10000 --max-load 0
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from shardlens.catalog import connect  # noqa: E402
from shardlens.near_duplicates import chunk_plan, close_pairs, group_hashes, hashes_to_array, refresh_near_duplicates  # noqa: E402

from _common import add_common_args, command_line, emit, log, wait_for_quiet  # noqa: E402


def synthesize(n: int, planted_share: float, max_distance: int, seed: int = 0) -> tuple[list[str], list[str], set[tuple[int, int]]]:
    """(image ids, hex hashes, the planted pairs as (i, j) with i < j in id order)."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    planted = int(n * planted_share)
    sources = rng.choice(n, size=planted, replace=False)
    targets = rng.choice(np.setdiff1d(np.arange(n), sources), size=planted, replace=False)
    for s, t in zip(sources, targets):
        value = int(hashes[s])
        for bit in rng.choice(64, size=rng.integers(0, max_distance + 1), replace=False):
            value ^= 1 << int(bit)
        hashes[t] = np.uint64(value)
    ids = [f"{k:064x}" for k in range(n)]  # already in id order
    return ids, [f"{int(h):016x}" for h in hashes], {(min(s, t), max(s, t)) for s, t in zip(sources, targets)}


def catalog_refresh(tmp: Path, ids: list[str], hexes: list[str], max_distance: int, added: int, seed: int = 1) -> tuple[float, float, int]:
    """(seconds of a full refresh, seconds of the update after one more shard of ``added``
    images, 1% of them near copies of earlier ones, images grouped after it)."""
    db = tmp / f"catalog-{len(ids)}.sqlite"
    conn = connect(db)
    insert = "INSERT INTO paths (shard, image_id, path, bytes, width, height, format, phash, status) VALUES (?, ?, ?, 1000, 640, 480, 'JPEG', ?, 'ok')"
    conn.execute("BEGIN")
    conn.executemany(insert, [(f"{k % 1000:04d}", iid, f"img/{k:07d}.jpg", h) for k, (iid, h) in enumerate(zip(ids, hexes))])
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    start = time.perf_counter()
    refresh_near_duplicates(conn, max_distance, [], full=True)
    conn.execute("COMMIT")
    full_s = time.perf_counter() - start
    rng = np.random.default_rng(seed)
    new_hashes = rng.integers(0, 2**64 - 1, size=added, dtype=np.uint64, endpoint=True)
    for k, src in enumerate(rng.choice(len(ids), size=added // 100, replace=False)):
        new_hashes[k] = np.uint64(int(hexes[src], 16) ^ 0b101)
    new_ids = [f"{len(ids) + k:064x}" for k in range(added)]
    conn.execute("BEGIN")
    conn.executemany(insert, [("new", iid, f"new/{k:07d}.jpg", f"{int(h):016x}") for k, (iid, h) in enumerate(zip(new_ids, new_hashes))])
    conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    start = time.perf_counter()
    grouped = refresh_near_duplicates(conn, max_distance, ["new"])
    conn.execute("COMMIT")
    update_s = time.perf_counter() - start
    updated = conn.execute("SELECT * FROM near_duplicates ORDER BY image_id").fetchall()
    conn.execute("BEGIN IMMEDIATE")
    refresh_near_duplicates(conn, max_distance, [], full=True)
    assert conn.execute("SELECT * FROM near_duplicates ORDER BY image_id").fetchall() == updated  # the update equals a regroup
    conn.execute("COMMIT")
    conn.close()
    db.unlink()
    return full_s, update_s, grouped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--max-distance", type=int, default=6)
    parser.add_argument("--planted", type=float, default=0.01, help="share of images that are a near copy of another")
    parser.add_argument("--no-catalog", action="store_true", help="skip the catalog refresh columns")
    parser.add_argument("--added", type=int, default=1000, help="images of the one shard an update adds")
    add_common_args(parser)
    args = parser.parse_args()
    load = wait_for_quiet(args.max_load, args.max_wait)
    d = args.max_distance
    rows = [
        f"| images | chunks (keys) | pairs found (planted found / planted) | group_hashes (s) | close_pairs alone (s) | catalog refresh (s) | update: one shard of {args.added:,} more (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    group_hashes(["a", "b"], ["0" * 16, "0" * 16], d)  # imports scipy once, outside the timings
    with tempfile.TemporaryDirectory(prefix="near-dup-bench-") as tmp:
        for n in args.sizes:
            log(f"{n:,} hashes")
            ids, hexes, planted = synthesize(n, args.planted, d)
            m, keys = chunk_plan(n, d)
            start = time.perf_counter()
            i, j, _ = close_pairs(hashes_to_array(hexes), d)
            pairs_s = time.perf_counter() - start
            found = set(zip(i.tolist(), j.tolist()))
            start = time.perf_counter()
            group_hashes(ids, hexes, d)
            group_s = time.perf_counter() - start
            refresh = update = "skipped"
            if not args.no_catalog:
                full_s, update_s, _ = catalog_refresh(Path(tmp), ids, hexes, d, args.added)
                refresh, update = f"{full_s:.2f}", f"{update_s:.2f}"
            rows.append(
                f"| {n:,} | {m} ({len(keys)}) | {len(found):,} ({len(found & planted):,} / {len(planted):,}) | {group_s:.2f} | {pairs_s:.2f} | {refresh} | {update} |"
            )
            log(rows[-1])
    notes = [
        f"max_distance {d}; {args.planted:.0%} of the images are planted near copies (0 to {d} bits flipped) of another. "
        "`chunks (keys)`: the 64 bits cut into m chunks, each key m - d of them (chunk_plan); pairs found beyond "
        "the planted ones are random hashes within the distance by chance, or two copies of one source. "
        "`group_hashes` includes parsing the hex hashes and the connected components; the catalog refresh also reads "
        "the hashes from `paths` and writes `near_duplicates`. The update: one more shard whose images "
        "(1% near copies of earlier ones) are compared with all, joined to the known groups; checked equal to a full regroup.",
    ]
    emit("Near-duplicate grouping at scale", command_line(), load, rows, notes, append=args.append)


if __name__ == "__main__":
    main()
