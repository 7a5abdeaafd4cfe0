"""Propagated labels at scale: what one refresh of ``propagated_labels`` costs on a large catalog,
which is what every catalog update and every review recorded in the dashboard pays
(:func:`shardlens.review_writer.mirror_reviews` copies the store and refreshes in one transaction).

The catalog is written straight into the real schema (``shardlens.catalog.connect``): ``--texts``
distinct OCR texts, one line each, in groups of five look-alikes (a centre plus noise, cosine
about 0.95 within a group) with 384-d embeddings; ``--regions`` regions of 50 classes, ten of
them in one region cluster. The review store holds ``--reviews`` relabeled OCR lines and a
relabeled region cluster (with one reviewed region of each of its classes). Each step is what
one ``mirror_reviews`` costs (copy the store, refresh, commit), in one process, as in the
dashboard.

    python bench/propagation_scale.py                       # 200,000 texts, 100,000 regions
    python bench/propagation_scale.py --texts 20000 --regions 10000 --max-wait 0
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from shardlens.catalog import connect  # noqa: E402
from shardlens.propagation import refresh_propagation  # noqa: E402
from shardlens.review_store import CLUSTER_COLUMNS, COLUMNS, connect_store  # noqa: E402
from shardlens.review_writer import mirror_reviews  # noqa: E402
from shardlens.vectors import encode_vector  # noqa: E402

from _common import add_common_args, command_line, emit, log, wait_for_quiet  # noqa: E402

DIM = 384
CLASSES = 50


def synthesize(db: Path, store: Path, texts: int, regions: int, reviews: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    conn = connect(db)
    conn.execute("BEGIN")
    n_images = max(1, texts // 4)
    ids = [f"{n:064x}" for n in range(n_images)]
    conn.executemany(
        "INSERT INTO paths (shard, image_id, path, bytes, width, height, format, status) VALUES (?, ?, ?, 1000, 640, 480, 'JPEG', 'ok')",
        [(f"{n % 64:04d}", iid, f"img/{n:07d}.jpg") for n, iid in enumerate(ids)],
    )
    centres = rng.normal(size=(texts // 5 + 1, DIM)).astype(np.float32)
    lines, embeds = [], []
    for t in range(texts):
        n = t % n_images
        vector = centres[t // 5] + rng.normal(scale=0.23, size=DIM).astype(np.float32)
        vector /= np.linalg.norm(vector)
        text = f"SIGN {t // 5} v{t % 5}"
        lines.append((f"{n % 64:04d}", ids[n], t // n_images, None, text, 0.9, None, None, "[0,0,10,10]", "bench"))
        embeds.append((f"{n % 64:04d}", "ocr", text, json.dumps([[ids[n], None, t // n_images]]), "bench", DIM, encode_vector(vector)))
    conn.executemany(
        "INSERT INTO ocr_lines (shard, image_id, line_no, region_id, text, confidence, language, language_confidence, bbox, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        lines,
    )
    conn.executemany("INSERT INTO embeddings (shard, kind, text, occurrences, model, dim, vector) VALUES (?, ?, ?, ?, ?, ?, ?)", embeds)
    region_rows = []
    for r in range(regions):
        n = r % n_images
        caption = f"class {r % CLASSES}"
        region_rows.append((f"{n % 64:04d}", ids[n], r // n_images, "[0,0,10,10]", 0.8, "[]", caption, caption, "bench"))
    conn.executemany(
        "INSERT INTO regions (shard, image_id, region_id, bbox, score, labels, caption, detector_label, detector_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        region_rows,
    )
    conn.execute("INSERT INTO clusters (cluster_id, item, label, keywords, size) VALUES (0, 'region', 'class 0', '[]', ?)", (regions,))
    conn.executemany(
        "INSERT INTO cluster_members (item, text, cluster_id, kinds, count, probability, membership, outlier_score) "
        "VALUES ('region', ?, 0, '[\"caption\"]', 1, 0.9, 'fitted', 0.1)",
        [(f"class {c}",) for c in range(10)],
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()

    now = "2025-01-01T00:00:00+00:00"
    picked = rng.choice(texts, size=min(reviews, texts), replace=False)
    rows = [
        (f"{ids[t % n_images]}/line/{t // n_images}", ids[t % n_images], None, int(t // n_images), "relabeled", f"sign {t // 5}", "bench", now, "bench", now)
        for t in picked
    ]
    rows += [
        (f"{ids[r % n_images]}/region/{r // n_images}", ids[r % n_images], int(r // n_images), None, "relabeled", "thing", "bench", now, "bench", now)
        for r in range(10)
    ]
    cluster = [("cluster/region/0", 0, "region", "relabeled", "thing", "class 0", "bench", now, "bench", now)]
    conn = connect_store(store)
    conn.executemany(f"INSERT OR REPLACE INTO reviews ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows)
    conn.executemany(f"INSERT INTO cluster_reviews ({', '.join(CLUSTER_COLUMNS)}) VALUES ({', '.join('?' * len(CLUSTER_COLUMNS))})", cluster)
    conn.close()
    return {"texts": texts, "ocr lines": texts, "regions": regions, "item reviews": len(rows), "cluster reviews": 1}


def add_review(store: Path, db: Path, text_no: int) -> None:
    """One more relabeled OCR line in the store, as the dashboard records it (before mirroring)."""
    conn = sqlite3.connect(db)
    image_id, line_no = conn.execute("SELECT image_id, line_no FROM ocr_lines WHERE text LIKE ? LIMIT 1", (f"SIGN {text_no // 5} v{text_no % 5}",)).fetchone()
    conn.close()
    now = "2025-01-02T00:00:00+00:00"
    conn = connect_store(store)
    conn.execute(
        f"INSERT OR REPLACE INTO reviews ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        (f"{image_id}/line/{line_no}", image_id, None, line_no, "relabeled", f"new {text_no}", "bench", now, "bench", now),
    )
    conn.close()


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--regions", type=int, default=100_000)
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    add_common_args(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="propagation-bench-") as tmp:
        db, store = Path(tmp) / "annotations.sqlite", Path(tmp) / "reviews.sqlite"
        log(f"writing a catalog of {args.texts:,} OCR texts and {args.regions:,} regions")
        counts = synthesize(db, store, args.texts, args.regions, args.reviews)
        load_before = wait_for_quiet(args.max_load, args.max_wait)
        first = timed(lambda: mirror_reviews(store, db))
        conn = sqlite3.connect(db)
        stats = {rule: n for rule, n in conn.execute("SELECT rule, COUNT(*) FROM propagated_labels GROUP BY rule")}
        pairs = conn.execute("SELECT COUNT(*) FROM similar_texts").fetchone()[0]
        conn.close()
        same = min(timed(lambda: mirror_reviews(store, db)) for _ in range(args.repeats))
        new = []
        for k in range(args.repeats):
            add_review(store, db, (k * 7919 + 3) % args.texts)
            new.append(timed(lambda: mirror_reviews(store, db)))
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM similarity_sources")
        full = timed(lambda: refresh_propagation(conn))
        conn.execute("ROLLBACK")
        conn.close()
    body = [
        "| step | time (s) |",
        "|---|---|",
        f"| first refresh: every text against every reviewed text (reads every vector once) | {first:.2f} |",
        f"| a review that adds no reviewed OCR text (a region, a new label for a reviewed text); best of {args.repeats} | {same:.2f} |",
        f"| a review of a new OCR text (every text compared in memory, near ones exactly); best of {args.repeats} | {min(new):.2f} |",
        f"| refresh from scratch in the same process (another threshold) | {full:.2f} |",
    ]
    notes = [
        f"Catalog: {', '.join(f'{v:,} {k}' for k, v in counts.items())}. Propagated: {stats.get('cluster', 0):,} labels from the "
        f"reviewed cluster, {stats.get('similarity', 0):,} from similar reviewed lines ({pairs:,} similar pairs)."
    ]
    emit("Propagated labels: one refresh", command_line(), load_before, body, notes, append=args.append)


if __name__ == "__main__":
    main()
