"""Review dashboard at scale: a synthetic catalog with 100,000 regions, the dashboard's query
times on it, and the time until the first page has rendered in a real browser.

The catalog is written straight into the real schema (``shardlens.catalog.connect``): images
(every path a symlink to one of a few small real JPEGs, so thumbnails are real), gate
decisions, regions with label candidates, OCR lines, clusters with Zipf-distributed sizes and
clustered 384-d embeddings. Reviews go through ``record_reviews`` like the dashboard's own.

    python bench/dashboard_scale.py                      # 100,000 regions, browser included
    python bench/dashboard_scale.py --regions 20000 --no-browser

The browser part needs Debian's chromium and the playwright package (.ci/install-browser.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shardlens.catalog import STAGE_TABLES, connect, record_columns  # noqa: E402
from shardlens.vectors import encode_vector  # noqa: E402

NOUNS = (
    "car", "person", "dog", "cat", "bicycle", "bus", "truck", "traffic light", "stop sign", "bench",
    "bird", "horse", "sheep", "cow", "bottle", "cup", "chair", "couch", "potted plant", "bed",
    "dining table", "tv", "laptop", "phone", "book", "clock", "vase", "umbrella", "handbag", "suitcase",
    "boat", "train", "airplane", "motorcycle", "fire hydrant", "parking meter", "kite", "skateboard",
    "surfboard", "tennis racket", "pizza", "donut", "cake", "sandwich", "banana", "apple", "orange",
    "broccoli", "carrot", "keyboard", "mouse", "remote", "oven", "sink", "refrigerator", "teddy bear",
)  # fmt: skip
ADJECTIVES = ("red", "blue", "small", "large", "old", "white", "black", "parked", "wooden", "green")
SIGNS = (
    "OPEN 24 HOURS", "EXIT", "Parking", "Main Street", "NO ENTRY", "SALE", "Pharmacy", "Bus Stop",
    "Platform", "Coffee", "Entrance", "Toilets", "Welcome", "Library", "Museum", "Hotel",
)  # fmt: skip
DIM = 384
SIZES = ((320, 240), (240, 320), (400, 300), (300, 300))


def _texts(n_clusters: int, rng: np.random.Generator) -> tuple[list[tuple[str, str, int]], dict[int, str]]:
    """(text, kind, cluster) for every distinct text, and cluster labels; cluster -1 = unclustered."""
    texts: list[tuple[str, str, int]] = []
    labels: dict[int, str] = {}
    n_caption = int(n_clusters * 0.8)
    for k in range(n_clusters):
        if k < n_caption:
            noun = NOUNS[k % len(NOUNS)]
            label = noun if k < len(NOUNS) else f"{noun} {k // len(NOUNS) + 1}"
            labels[k] = label
            for adj in ADJECTIVES[: int(rng.integers(3, len(ADJECTIVES) + 1))]:
                texts.append((f"{adj} {label}", "caption", k))
            texts.append((label, "caption", k))
        else:
            sign = SIGNS[k % len(SIGNS)]
            label = sign if k - n_caption < len(SIGNS) else f"{sign} {(k - n_caption) // len(SIGNS) + 1}"
            labels[k] = label
            for suffix in ("", " 1", " 2", " A", " B", " →")[: int(rng.integers(2, 7))]:
                texts.append((f"{label}{suffix}", "ocr", k))
    for i in range(max(10, n_clusters // 3)):  # texts HDBSCAN left alone
        kind = "caption" if i % 2 == 0 else "ocr"
        texts.append((f"odd thing {i}" if kind == "caption" else f"Ref. {1000 + i}", kind, -1))
    seen: set[str] = set()
    unique = [t for t in texts if not (t[0] in seen or seen.add(t[0]))]  # cluster_members.text is a key
    return unique, labels


def make_images(root: Path, n_images: int) -> list[tuple[str, int, int]]:
    """A few real JPEGs and ``n_images`` paths (symlinks to them): (path, width, height)."""
    from PIL import Image, ImageDraw

    base = root / "_base"
    base.mkdir(parents=True, exist_ok=True)
    sources = []
    for i in range(24):
        w, h = SIZES[i % len(SIZES)]
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([(x * (i + 3)) % 256, (y * (i + 5)) % 256, ((x + y) * 2 + i * 40) % 256], axis=2).astype(np.uint8)
        image = Image.fromarray(rgb)
        ImageDraw.Draw(image).rectangle((w // 4, h // 4, 3 * w // 4, 3 * h // 4), outline=(255, 255, 255), width=3)
        target = base / f"base{i:02d}.jpg"
        image.save(target, quality=85)
        sources.append((target, w, h))
    out = []
    for n in range(n_images):
        rel = f"cam{n % 50:02d}/img_{n:07d}.jpg"
        target = root / rel
        target.parent.mkdir(exist_ok=True)
        src, w, h = sources[n % len(sources)]
        if not target.exists():
            os.symlink(src, target)
        out.append((rel, w, h))
    return out


def synthesize_catalog(db: Path, images_root: Path, regions: int = 100_000, regions_per_image: int = 4, clusters: int = 300, seed: int = 0) -> dict:
    """Write a catalog with ``regions`` regions into ``db`` (a new file); return counts."""
    rng = np.random.default_rng(seed)
    n_images = max(1, regions // regions_per_image)
    listed = make_images(images_root, n_images)
    texts, labels = _texts(clusters, rng)
    captions = [i for i, t in enumerate(texts) if t[1] == "caption"]
    ocr_texts = [i for i, t in enumerate(texts) if t[1] == "ocr"]
    # Zipf-like popularity so cluster sizes vary over orders of magnitude
    cap_p = 1.0 / np.arange(1, len(captions) + 1) ** 0.9
    cap_p /= cap_p.sum()
    ocr_p = 1.0 / np.arange(1, len(ocr_texts) + 1) ** 0.9
    ocr_p /= ocr_p.sum()
    cap_perm = rng.permutation(captions)
    ocr_perm = rng.permutation(ocr_texts)

    cols = {kind: ["shard"] + record_columns(kind) for kind in STAGE_TABLES}
    rows: dict[str, list[tuple]] = {kind: [] for kind in STAGE_TABLES}
    region_labels = []
    counts: dict[int, int] = {}
    occurrences: dict[int, list] = {}

    def add(table_kind: str, **values) -> None:
        rows[table_kind].append(tuple(values.get(c) for c in cols[table_kind]))

    region_no = 0
    for n, (rel, w, h) in enumerate(listed):
        image_id = f"{n:016x}".rjust(64, "0")
        shard = f"{n % 64:04d}"
        add("ingest", shard=shard, image_id=image_id, path=rel, bytes=20_000, width=w, height=h, format="JPEG", status="ok")
        n_regions = min(regions_per_image, regions - region_no)
        n_lines = 2 if n % 3 == 0 else 0
        add(
            "gate", shard=shard, image_id=image_id, has_text=int(n_lines > 0), score=0.9 if n_lines else 0.05,
            decision="ocr" if n_lines else "skip", skip_reason=None if n_lines else "no_text_regions",
            text_regions=n_lines, gate_version="synthetic",
        )  # fmt: skip
        for r in range(n_regions):
            t = int(cap_perm[rng.choice(len(captions), p=cap_p)])
            text = texts[t][0]
            x0, y0 = float(rng.integers(0, w // 2)), float(rng.integers(0, h // 2))
            x1, y1 = min(w, x0 + float(rng.integers(20, w // 2))), min(h, y0 + float(rng.integers(20, h // 2)))
            score = round(float(rng.uniform(0.25, 0.99)), 6)
            cands = [
                {"label": text.split(" ", 1)[-1], "score": score, "source": "detector"},
                {"label": NOUNS[t % len(NOUNS)], "score": round(score / 2, 6), "source": "vocabulary"},
            ]
            add(
                "region", shard=shard, image_id=image_id, region_id=r, bbox=json.dumps([x0, y0, x1, y1]), score=score,
                labels=json.dumps(cands), caption=text, detector_label=cands[0]["label"], detector_version="synthetic",
            )  # fmt: skip
            for rank, c in enumerate(cands):
                region_labels.append((shard, image_id, r, rank, c["label"], c["score"], c["source"]))
            counts[t] = counts.get(t, 0) + 1
            occurrences.setdefault(t, []).append([image_id, r, None])
            region_no += 1
        for line in range(n_lines):
            t = int(ocr_perm[rng.choice(len(ocr_texts), p=ocr_p)])
            bbox = [10.0, 10.0 + 30 * line, min(w, 200.0), 36.0 + 30 * line]
            add(
                "ocr", shard=shard, image_id=image_id, line_no=line, region_id=None, text=texts[t][0],
                confidence=round(float(rng.uniform(0.5, 1.0)), 6), language="en", language_confidence=0.9,
                bbox=json.dumps(bbox), source="synthetic",
            )  # fmt: skip
            counts[t] = counts.get(t, 0) + 1
            occurrences.setdefault(t, []).append([image_id, None, line])

    centres = rng.normal(size=(clusters, DIM)).astype(np.float32)
    members, cluster_rows = [], []
    for t, (text, kind, k) in enumerate(texts):
        if t not in counts:
            continue
        prob = 0.0 if k < 0 else round(float(rng.uniform(0.6, 1.0)), 6)
        members.append(("text" if kind == "ocr" else "region", text, k, json.dumps([kind]), counts[t], prob, "fitted"))
        vector = (centres[k] if k >= 0 else rng.normal(size=DIM)) + rng.normal(scale=0.35, size=DIM)
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        add(
            "embedding",
            shard="0000",
            kind=kind,
            text=text,
            occurrences=json.dumps(occurrences[t][:50]),
            model="synthetic",
            dim=DIM,
            vector=encode_vector(vector),
        )
    sizes: dict[int, int] = {}
    items: dict[int, str] = {}
    for item, text, k, _, count, _, _ in members:
        sizes[k] = sizes.get(k, 0) + count
        items.setdefault(k, item)
    for k, size in sizes.items():
        label = "unclustered" if k < 0 else labels[k]
        keywords = [] if k < 0 else label.lower().split()[:3]
        cluster_rows.append((k, None if k < 0 else items[k], label, json.dumps(keywords), size))

    if db.exists():
        db.unlink()
    conn = connect(db)
    try:
        conn.execute("BEGIN")
        for kind, (table, _) in STAGE_TABLES.items():
            marks = ", ".join("?" * len(cols[kind]))
            conn.executemany(f"INSERT INTO {table} ({', '.join(cols[kind])}) VALUES ({marks})", rows[kind])
        conn.executemany("INSERT INTO region_labels VALUES (?, ?, ?, ?, ?, ?, ?)", region_labels)
        conn.executemany("INSERT INTO clusters VALUES (?, ?, ?, ?, ?)", cluster_rows)
        conn.executemany("INSERT INTO cluster_members (item, text, cluster_id, kinds, count, probability, membership) VALUES (?, ?, ?, ?, ?, ?, ?)", members)
        # every item's risk (the queue's riskiest-first order reads it by item key)
        conn.execute(
            "INSERT INTO item_signals (shard, item_key, image_id, item, region_id, line_no, text, risk) "
            "SELECT shard, image_id || '/region/' || region_id, image_id, 'region', region_id, NULL, caption, 1.0 - score FROM regions"
        )
        conn.execute(
            "INSERT INTO item_signals (shard, item_key, image_id, item, region_id, line_no, text, risk) "
            "SELECT shard, image_id || '/line/' || line_no, image_id, 'text', NULL, line_no, text, 1.0 - confidence FROM ocr_lines"
        )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return {
        "images": len(listed), "regions": len(rows["region"]), "ocr_lines": len(rows["ocr"]),
        "clusters": len(cluster_rows), "texts": len(members),
    }  # fmt: skip


def add_reviews(db: Path, store: Path, n: int, seed: int = 1) -> int:
    """``n`` reviews of random regions through the validated path (record_reviews)."""
    import sqlite3

    from shardlens.review_store import Review
    from shardlens.reviews import record_reviews

    conn = sqlite3.connect(db)
    picked = conn.execute("SELECT image_id, region_id, caption FROM regions ORDER BY (rowid * 2654435761) % 4294967311 LIMIT ?", (n,)).fetchall()
    conn.close()
    statuses = ("accepted", "relabeled", "rejected")
    reviews = [
        Review(image_id, region_id, None, statuses[i % 3], None if i % 3 == 2 else (caption if i % 3 == 0 else f"{caption} (fixed)"), "bench")
        for i, (image_id, region_id, caption) in enumerate(picked)
    ]
    return record_reviews(reviews, db, store, source="bench")


def time_queries(db: Path, repeat: int = 3) -> list[tuple[str, float]]:
    from shardlens.dashboard import queries as q

    out = []
    conn = q.open_catalog(db)
    try:
        first_cluster = q.cluster_page(conn, 0, 1)[0].cluster_id
        some_image = q.item_page(conn, q.ItemFilter(), 0, 1)[0]["image_id"]
        cases = {
            "summary": lambda: q.summary(conn),
            "cluster page 1 (10 clusters)": lambda: q.cluster_page(conn, 0, 10),
            "cluster page 5": lambda: q.cluster_page(conn, 40, 10),
            "cluster samples (10 x 6)": lambda: q.cluster_samples(conn, [c.cluster_id for c in q.cluster_page(conn, 0, 10)], 6),
            "items page 1, no filter (riskiest first, the queue's default)": lambda: q.item_page(conn, q.ItemFilter(), 0, 20),
            "items page 1, no filter, least confident first": lambda: q.item_page(conn, q.ItemFilter(), 0, 20, order="confidence"),
            "items page 200, no filter": lambda: q.item_page(conn, q.ItemFilter(), 4000, 20),
            "items count, no filter": lambda: q.count_items(conn, q.ItemFilter()),
            "items page, cluster filter": lambda: q.item_page(conn, q.ItemFilter(cluster_id=first_cluster), 0, 20),
            "items count, cluster filter": lambda: q.count_items(conn, q.ItemFilter(cluster_id=first_cluster)),
            "items page, unreviewed + conf 0.3-0.6": lambda: q.item_page(
                conn, q.ItemFilter(unreviewed_only=True, min_confidence=0.3, max_confidence=0.6), 0, 20
            ),
            "items page, OCR search 'exit'": lambda: q.item_page(conn, q.ItemFilter(text_search="exit"), 0, 20),
            "items page, label 'dog'": lambda: q.item_page(conn, q.ItemFilter(label="dog"), 0, 20),
            "image detail (regions, lines, gate)": lambda: (q.image_info(conn, some_image), q.image_regions(conn, some_image), q.image_lines(conn, some_image)),
            "next image": lambda: q.neighbour_image(conn, some_image, +1),
            "map sample (3000 points)": lambda: q.embedding_sample(conn, 3000),
            "cluster item keys (largest cluster)": lambda: q.cluster_item_keys(conn, first_cluster),
        }
        for name, fn in cases.items():
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            out.append((name, best))
    finally:
        conn.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_first_render(db: Path, store: Path, images: Path, loads: int = 3, timeout: float = 180.0) -> dict:
    """Start the app, open it in headless Chromium ``loads`` times (a new tab each time) and
    measure until the cluster list is shown and until every thumbnail of the page has loaded.
    The first load also fills the thumbnail cache (cold), the later ones read it (warm)."""
    import urllib.request

    from playwright.sync_api import sync_playwright

    from shardlens.dashboard import queries as q
    from shardlens.dashboard.launch import DashboardServer, dashboard_command
    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    conn = q.open_catalog(db)
    first_page = [c.cluster_id for c in q.cluster_page(conn, 0, 10)]
    expected = sum(len(v) for v in q.cluster_samples(conn, first_page).values())  # thumbnails on page 1
    conn.close()
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="dashboard-", suffix=".log", delete=False)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        dashboard_command(DashboardServer(db, store, port=port, images=images)), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    figures: dict = {"list_s": [], "thumbs_s": []}
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"dashboard did not start: see {log.name}")
            time.sleep(0.1)
        figures["server_ready_s"] = time.perf_counter() - t0
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            ctx = p.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000}
            )
            ctx.set_default_timeout(timeout * 1000)
            for _ in range(loads):
                page = ctx.new_page()
                t1 = time.perf_counter()
                page.goto(url, wait_until="commit")
                page.locator(".sl-cluster").first.wait_for()
                figures["list_s"].append(time.perf_counter() - t1)
                page.wait_for_function(  # the frontend renders the page's elements progressively
                    "n => { const imgs = [...document.querySelectorAll(\"[data-testid='stImage'] img\")];"
                    " return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }",
                    arg=expected,
                )
                figures["thumbs_s"].append(time.perf_counter() - t1)
                figures["clusters_shown"] = page.locator(".sl-cluster").count()
                figures["thumbnails_shown"] = page.locator("[data-testid='stImage'] img").count()
                page.close()
            ctx.close()
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
    return figures


def render_line(name: str, figures: dict) -> str:
    cold_list, cold_all = figures["list_s"][0], figures["thumbs_s"][0]
    warm_list, warm_all = min(figures["list_s"][1:] or [cold_list]), min(figures["thumbs_s"][1:] or [cold_all])
    return (
        f"| {name} | {figures['server_ready_s']:.1f} | {cold_list:.2f} / {cold_all:.2f} | {warm_list:.2f} / {warm_all:.2f} | "
        f"{figures['clusters_shown']} clusters, {figures['thumbnails_shown']} thumbnails |"
    )


def browser_figures(work: Path, db: Path, store: Path, images: Path, counts: dict, args) -> None:
    print("\n| first page (clusters) | server ready (s) | cold cache: list / all thumbnails (s) | warm: list / all (s) | shown |\n|---|---:|---:|---:|---|")
    small = work / "small"
    if not (small / "results" / "annotations.sqlite").exists():
        synthesize_catalog(small / "results" / "annotations.sqlite", images, regions=1000, clusters=max(1, args.clusters // 10))
    shutil.rmtree(small / "results" / ".thumbnails", ignore_errors=True)
    shutil.rmtree(db.parent / ".thumbnails", ignore_errors=True)
    print(render_line("1,000 regions (baseline)", time_first_render(small / "results" / "annotations.sqlite", small / "reviews.sqlite", images)), flush=True)
    print(render_line(f"{counts['regions']:,} regions", time_first_render(db, store, images)))
    print(f"\nload average after the run: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=300)
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--no-browser", action="store_true", help="query times only")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it (default: a temporary folder)")
    parser.add_argument("--browser-only", action="store_true", help="with --keep: reuse its catalog, measure the browser only")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="dashboard-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    db, store, images = work / "results" / "annotations.sqlite", work / "reviews" / "reviews.sqlite", work / "images"
    try:
        if args.browser_only and args.keep and db.exists():
            conn = sqlite3.connect(db)
            counts = {"regions": conn.execute("SELECT COUNT(*) FROM regions").fetchone()[0]}
            conn.close()
            print(f"load average at start: {os.getloadavg()[0]:.1f}")
            browser_figures(work, db, store, images, counts, args)
            return
        t0 = time.perf_counter()
        counts = synthesize_catalog(db, images, regions=args.regions, clusters=args.clusters)
        build = time.perf_counter() - t0
        if store.exists():
            store.unlink()
        t0 = time.perf_counter()
        n_reviews = add_reviews(db, store, args.reviews) if args.reviews else 0
        review_s = time.perf_counter() - t0
        print(f"# dashboard at scale ({platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()})")
        print(f"catalog: {counts} built in {build:.1f}s, {db.stat().st_size / 1e6:.0f} MB; {n_reviews} reviews recorded in {review_s:.2f}s")
        print("\n| query (best of 3, ms) | catalog as built |\n|---|---:|")
        for name, seconds in time_queries(db):  # the catalog indexes texts: the dashboard only reads it
            print(f"| {name} | {seconds * 1000:.1f} |")
        if not args.no_browser:
            browser_figures(work, db, store, images, counts, args)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
