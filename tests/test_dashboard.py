"""The review dashboard: its queries against a real catalog (made by the real workflow on a tiny
generated image set), its thumbnail cache, and the Streamlit app driven in headless Chromium
(Debian's, through Playwright): cluster counts, an image's boxes, and an override made in the
browser landing in the review store, the catalog and a fresh export.

The browser tests skip (with the reason) only when streamlit, playwright or /usr/bin/chromium
is missing (`.ci/install-browser.sh` installs the last two); with SHARDLENS_REQUIRE_BROWSER=1
(CI) that is a failure instead.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shardlens.dashboard import queries as q
from shardlens.dashboard.launch import (
    MIN_TOKEN_LENGTH,
    TOKEN_ENV,
    DashboardError,
    DashboardServer,
    check_access,
    dashboard_command,
    is_loopback,
    token_matches,
)
from shardlens.dashboard.thumbnails import Box, ThumbnailCache, default_cache_dir
from shardlens.exports import export_all
from shardlens.review_store import Review, connect_store
from shardlens.reviews import record_reviews
from shardlens.run_config import guess_images_root

from browser import CHROMIUM, CHROMIUM_ARGS
from conftest import REPO, skip_unless_available, smooth_image, snakemake, text_image, write_config

SCREENSHOT = REPO / "docs" / "dashboard.png"
VIEW_COLUMNS = (
    "image_id, item, region_id, line_no, bbox, text, score, cluster_id, machine_label, confidence, review_status, review_label, final_label, "
    "label_source, propagated_from"
)
ITEM_ORDER = "image_id, item, region_id, line_no"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory) -> Path:
    """A real run of the workflow on six small images and a broken file (one build per module)."""
    from skimage import data

    workdir = tmp_path_factory.mktemp("dashboard")
    root = workdir / "images"
    (root / "sub").mkdir(parents=True)
    text_image(["OPEN 24 HOURS"]).save(root / "open.png")
    text_image(["Main Street", "Parking"]).save(root / "sub" / "street.png")
    Image.fromarray(data.chelsea()).save(root / "cat.jpg", quality=90)
    Image.fromarray(data.coffee()).save(root / "sub" / "coffee.JPG", quality=90)
    Image.fromarray(data.astronaut()).save(root / "astronaut.png")
    smooth_image(1).save(root / "gradient.jpg", quality=90)
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    write_config(workdir, images=str(root), shards={"count": 2})
    snakemake(workdir, "--cores", "2")
    assert (workdir / "results" / "annotations.sqlite").exists()
    return workdir


def copy_catalog(src: Path, dst: Path) -> Path:
    """A consistent copy of a WAL-mode catalog (SQLite's backup API)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    source, target = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return dst


@pytest.fixture()
def catalog(workflow_run, tmp_path) -> Path:
    """A private copy of the run's catalog (tests write reviews into it)."""
    return copy_catalog(workflow_run / "results" / "annotations.sqlite", tmp_path / "results" / "annotations.sqlite")


def view_rows(db: Path, where: str = "", params=()) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return [tuple(r) for r in conn.execute(f"SELECT {VIEW_COLUMNS} FROM final_annotations {where} ORDER BY {ITEM_ORDER}", params)]
    finally:
        conn.close()


def as_tuples(rows: list[dict]) -> list[tuple]:
    import json

    out = []
    for r in rows:
        bbox = json.dumps(r["bbox"], separators=(",", ":")) if r["bbox"] is not None else None
        out.append((r["image_id"], r["item"], r["region_id"], r["line_no"], bbox, *(r[c] for c in VIEW_COLUMNS.split(", ")[5:])))
    return out


def load_bench():
    spec = importlib.util.spec_from_file_location("dashboard_scale", REPO / "bench" / "dashboard_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------ queries


@pytest.mark.slow
def test_items_are_exactly_the_catalog_views(catalog, tmp_path):
    conn = q.open_catalog(catalog)
    first = conn.execute("SELECT image_id, region_id FROM regions ORDER BY image_id, region_id LIMIT 1").fetchone()
    line = conn.execute("SELECT image_id, line_no FROM ocr_lines ORDER BY image_id, line_no LIMIT 1").fetchone()
    conn.close()
    assert first is not None and line is not None, "the tiny set must give regions and OCR lines"
    record_reviews(
        [Review(first[0], first[1], None, "relabeled", "kitten", "t"), Review(line[0], None, line[1], "rejected", None, "t")],
        catalog, tmp_path / "store.sqlite", source="test",
    )  # fmt: skip
    conn = q.open_catalog(catalog)
    sql, params = q._items_sql(q.ItemFilter())
    mine = [tuple(r) for r in conn.execute(f"SELECT {VIEW_COLUMNS} FROM ({sql}) ORDER BY {ITEM_ORDER}", params)]
    conn.close()
    assert mine == view_rows(catalog)
    assert {r[12] for r in mine} >= {"kitten"} and any(r[10] == "rejected" and r[12] is None for r in mine)


@pytest.mark.slow
def test_paging_and_filters_against_sql(catalog, tmp_path):
    conn = q.open_catalog(catalog)
    everything = view_rows(catalog)
    assert q.count_items(conn, q.ItemFilter()) == len(everything) > 0
    for order in q.ITEM_ORDERS:
        paged = []
        for offset in range(0, len(everything) + 2, 2):
            page = q.item_page(conn, q.ItemFilter(), offset, 2, order=order)
            assert len(page) <= 2
            paged += page
        assert sorted(as_tuples(paged)) == sorted(everything), order  # every item once, none twice
    confidences = [r["confidence"] for r in q.item_page(conn, q.ItemFilter(), 0, 100, order="confidence")]
    assert confidences == sorted(confidences)
    # riskiest first: by the item's risk (shardlens.risk), highest first, as the catalog holds it
    risk_of = dict(conn.execute("SELECT item_key, risk FROM item_signals"))
    ranked = [risk_of[f"{r['image_id']}/{'region/' + str(r['region_id']) if r['region_id'] is not None else 'line/' + str(r['line_no'])}"]
              for r in q.item_page(conn, q.ItemFilter(), 0, 1000, order="risk")]  # fmt: skip
    assert len(ranked) == len(everything) and ranked == sorted(ranked, reverse=True) and len(set(ranked)) > 1

    def check(f: q.ItemFilter, where: str, params=()):
        expected = view_rows(catalog, where, params)
        got = as_tuples(q.item_page(conn, f, 0, 1000, order="image"))
        assert got == expected, f
        assert q.count_items(conn, f) == len(expected)
        return expected

    clusters = [cid for (cid,) in conn.execute("SELECT cluster_id FROM clusters ORDER BY cluster_id")]
    assert clusters, "the workflow made no clusters"
    items = {r.cluster_id: r.items for r in q.cluster_page(conn, 0, 1000)}
    for cid in clusters:
        assert len(check(q.ItemFilter(cluster_id=cid), "WHERE cluster_id = ?", (cid,))) == items[cid]
    assert sum(items.values()) == len(everything)
    label = everything[0][8]
    check(q.ItemFilter(label=label.upper()), "WHERE lower(machine_label) = lower(?) OR lower(final_label) = lower(?)", (label, label))
    check(q.ItemFilter(has_text=True), "WHERE image_id IN (SELECT image_id FROM ocr_lines)")
    check(q.ItemFilter(has_text=False), "WHERE image_id NOT IN (SELECT image_id FROM ocr_lines)")
    check(q.ItemFilter(min_confidence=0.5, max_confidence=1.0), "WHERE confidence >= 0.5")
    check(q.ItemFilter(max_confidence=0.5), "WHERE confidence <= 0.5")
    check(q.ItemFilter(item="text"), "WHERE item = 'text'")
    found = check(q.ItemFilter(text_search="park"), "WHERE image_id IN (SELECT image_id FROM ocr_lines WHERE lower(text) LIKE '%park%')")
    assert found, "OCR search found nothing for 'park' (sub/street.png reads 'Parking')"
    check(q.ItemFilter(text_search="100%_"), "WHERE 0")  # LIKE wildcards are literal
    # unreviewed only: a review takes the item out of the list
    before = q.count_items(conn, q.ItemFilter(unreviewed_only=True))
    record_reviews([Review(everything[0][0], everything[0][2], everything[0][3], "accepted", everything[0][8])], catalog, tmp_path / "s.sqlite", "test")
    assert q.count_items(conn, q.ItemFilter(unreviewed_only=True)) == before - 1
    check(q.ItemFilter(unreviewed_only=True), "WHERE review_status IS NULL")
    conn.close()


@pytest.mark.slow
def test_clusters_page_counts_and_samples(catalog):
    conn = q.open_catalog(catalog)
    total = q.count_cluster_rows(conn)
    pages = [q.cluster_page(conn, offset, 1) for offset in range(total + 1)]
    assert pages[-1] == [] and all(len(p) == 1 for p in pages[:-1])
    rows = [p[0] for p in pages[:-1]]
    assert rows == q.cluster_page(conn, 0, 100)
    real = [r for r in rows if r.cluster_id >= 0]
    # one count of clusters: HDBSCAN's, without the 'unclustered' bucket, in the sidebar's summary too
    assert q.count_clusters(conn) == q.summary(conn)["clusters"] == len(real)
    assert [r.size for r in real] == sorted((r.size for r in real), reverse=True)
    assert all(r.cluster_id < 0 for r in rows[len(real) :])  # 'unclustered' last
    items = dict(conn.execute("SELECT cluster_id, COUNT(*) FROM item_annotations GROUP BY cluster_id").fetchall())
    texts = dict(conn.execute("SELECT cluster_id, COUNT(*) FROM cluster_members GROUP BY cluster_id").fetchall())
    for r in rows:
        assert r.items == items.get(r.cluster_id, 0), r
        assert r.texts == texts.get(r.cluster_id, 0), r
    samples = q.cluster_samples(conn, [r.cluster_id for r in rows], per_cluster=6)
    for r in rows:
        images = [s["image_id"] for s in samples[r.cluster_id]]
        assert len(images) <= 6 and len(set(images)) == len(images) and (len(images) > 0) == (r.items > 0)
        members = {row[0] for row in conn.execute("SELECT image_id FROM item_annotations WHERE cluster_id = ?", (r.cluster_id,))}
        assert set(images) <= members
        assert all(s["path"] and s["width"] for s in samples[r.cluster_id])
    for r in rows:
        assert len(q.cluster_item_keys(conn, r.cluster_id)) == r.items
    conn.close()


@pytest.mark.slow
def test_image_detail_and_navigation(catalog):
    conn = q.open_catalog(catalog)
    paths = [p for (p,) in conn.execute("SELECT path FROM images ORDER BY path")]
    seen, image_id = [], q.first_image(conn)
    while image_id is not None:
        seen.append(q.image_info(conn, image_id)["path"])
        image_id = q.neighbour_image(conn, image_id, +1)
    assert seen == paths
    back, image_id = [], q.find_image(conn, paths[-1])
    while image_id is not None:
        back.append(q.image_info(conn, image_id)["path"])
        image_id = q.neighbour_image(conn, image_id, -1)
    assert back == paths[::-1]
    cat = q.find_image(conn, "cat.jpg")
    assert q.find_image(conn, cat[:10]) == cat and q.find_image(conn, "CAT") == cat and q.find_image(conn, "no such") is None
    info = q.image_info(conn, cat)
    assert info["gate_decision"] in ("ocr", "skip") and info["width"] > 0
    n_regions = conn.execute("SELECT COUNT(*) FROM regions WHERE image_id = ?", (cat,)).fetchone()[0]
    regions = q.image_regions(conn, cat)
    assert len(regions) == n_regions > 0 and all(len(r["bbox"]) == 4 and r["labels"] for r in regions)
    street = q.find_image(conn, "street")
    lines = q.image_lines(conn, street)
    assert [line["text"] for line in lines] == [t for (t,) in conn.execute("SELECT text FROM ocr_lines WHERE image_id = ? ORDER BY line_no", (street,))]
    broken = conn.execute("SELECT image_id FROM paths WHERE path = 'broken.jpg'").fetchone()
    if broken and broken[0]:
        assert q.image_info(conn, broken[0])["status"] == "error"
    conn.close()


@pytest.mark.slow
def test_embedding_map_sample(catalog):
    conn = q.open_catalog(catalog)
    n_texts = conn.execute("SELECT COUNT(DISTINCT text) FROM embeddings").fetchone()[0]
    sample = q.embedding_sample(conn, 3000)
    assert len(sample) == n_texts and len({s["text"] for s in sample}) == len(sample)
    assert len(q.embedding_sample(conn, 2)) == 2
    coords = q.project_2d(np.stack([s["vector"] for s in sample]))
    assert coords.shape == (len(sample), 2) and np.isfinite(coords).all()
    assert np.allclose(coords, q.project_2d(np.stack([s["vector"] for s in sample])))
    conn.close()


def test_queries_on_a_synthetic_catalog(tmp_path):
    """The same checks on a bigger catalog made like the 100k benchmark's (3,000 regions)."""
    bench = load_bench()
    db, store = tmp_path / "results" / "annotations.sqlite", tmp_path / "reviews.sqlite"
    counts = bench.synthesize_catalog(db, tmp_path / "images", regions=3000, clusters=40)
    assert counts["regions"] == 3000
    assert bench.add_reviews(db, store, 30) == 30
    conn = q.open_catalog(db)
    names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"regions_caption", "ocr_text"} <= names  # made by the catalog: the dashboard only reads
    sql, params = q._items_sql(q.ItemFilter())
    assert [tuple(r) for r in conn.execute(f"SELECT {VIEW_COLUMNS} FROM ({sql}) ORDER BY {ITEM_ORDER}", params)] == view_rows(db)
    total = q.count_items(conn, q.ItemFilter())
    assert total == counts["regions"] + counts["ocr_lines"]
    keys = set()
    for offset in range(0, total, 500):
        keys |= {(r["image_id"], r["item"], r["region_id"], r["line_no"]) for r in q.item_page(conn, q.ItemFilter(), offset, 500)}
    assert len(keys) == total
    biggest = q.cluster_page(conn, 0, 1)[0]
    assert q.count_items(conn, q.ItemFilter(cluster_id=biggest.cluster_id)) == biggest.items
    assert q.count_items(conn, q.ItemFilter(unreviewed_only=True)) == total - 30
    assert len(q.embedding_sample(conn, 100)) == 100
    conn.close()


def test_the_dashboard_opens_no_writer_connection():
    """The dashboard only reads the catalog (:func:`queries.open_catalog`, read-only: the indexes
    its queries use are made by the catalog build); its only writes are people's reviews, through
    :mod:`shardlens.reviews`."""
    import ast

    for path in sorted((REPO / "shardlens" / "dashboard").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        assert not calls & {"sqlite3.connect", "connect_writer", "connect"}, path.name


def test_propagated_labels_in_the_queries(tmp_path):
    """On a synthetic catalog with a relabeled region cluster that new images join and a relabeled
    OCR line with look-alikes: the dashboard's items are the view's rows (label_source and
    propagated_from included), the label-source filter lists exactly the view's rows of each
    source, the label filter finds propagated labels, and the bulk actions' items are the
    filtered propagated ones."""
    from shardlens.review_writer import mirror_reviews
    from shardlens.reviews import record_cluster_review

    bench = load_bench()
    db, store = tmp_path / "results" / "annotations.sqlite", tmp_path / "reviews.sqlite"
    bench.synthesize_catalog(db, tmp_path / "images", regions=600, clusters=12)
    conn = sqlite3.connect(db)
    cluster, caption = conn.execute(
        "SELECT m.cluster_id, m.text FROM cluster_members m JOIN clusters c USING (cluster_id) WHERE c.item = 'region' "
        "AND m.text IN (SELECT caption FROM regions) ORDER BY c.size DESC, m.count DESC LIMIT 1"
    ).fetchone()
    line = conn.execute("SELECT image_id, line_no, text FROM ocr_lines ORDER BY image_id, line_no LIMIT 1").fetchone()
    conn.close()
    record_cluster_review(db, store, cluster, "relabeled", "automobile", source="test")
    record_reviews([Review(line[0], None, line[1], "relabeled", "way out")], db, store, "test")
    # two new images whose regions fall into the cluster, as a catalog update would bring them
    conn = sqlite3.connect(db)
    for n, new in enumerate(("ab" * 32, "cd" * 32)):
        conn.execute(
            "INSERT INTO paths (shard, image_id, path, bytes, width, height, format, status) VALUES ('0000', ?, ?, 1, 320, 240, 'JPEG', 'ok')",
            (new, f"new/{n}.jpg"),
        )
        conn.execute(
            "INSERT INTO regions (shard, image_id, region_id, bbox, score, labels, caption, detector_label, detector_version) "
            "VALUES ('0000', ?, 0, '[1.0,1.0,50.0,50.0]', 0.5, '[]', ?, ?, 'synthetic')",
            (new, caption, caption),
        )
    conn.commit()
    conn.close()
    mirror_reviews(store, db)  # what every catalog update and review import does: propagation refreshed

    conn = q.open_catalog(db)

    def mine(f: q.ItemFilter) -> list[tuple]:
        sql, params = q._items_sql(f)
        return [tuple(r) for r in conn.execute(f"SELECT {VIEW_COLUMNS} FROM ({sql}) ORDER BY {ITEM_ORDER}", params)]

    def keys(rows) -> list[tuple]:  # item, final label and where it comes from (the page's rows re-dump bbox)
        return [(r[0], r[1], r[2], r[3], r[12], r[13], r[14]) for r in rows]

    assert mine(q.ItemFilter()) == view_rows(db)
    propagated = view_rows(db, "WHERE label_source = 'propagated'")
    assert {r[1] for r in propagated} == {"region", "text"}  # the new regions, and look-alikes of the reviewed line
    new_regions = [r for r in propagated if r[0] in ("ab" * 32, "cd" * 32)]
    assert [(r[12], r[14]) for r in new_regions] == [("automobile", f"cluster/region/{cluster}")] * 2
    assert all(r[14] == f"{line[0]}/line/{line[1]}" and r[12] == "way out" for r in propagated if r[1] == "text")
    assert q.summary(conn)["propagated"] == len(propagated)
    for source in q.LABEL_SOURCES:
        expected = view_rows(db, "WHERE label_source = ?", (source,))
        assert expected, source
        assert mine(q.ItemFilter(label_source=source)) == expected, source
        assert keys(as_tuples(q.item_page(conn, q.ItemFilter(label_source=source), 0, 10_000, order="image"))) == keys(expected), source
        assert q.count_items(conn, q.ItemFilter(label_source=source)) == len(expected)
    found = q.item_page(conn, q.ItemFilter(label="AUTOMOBILE", unreviewed_only=True), 0, 100, order="image")
    assert keys(as_tuples(found)) == keys(r for r in view_rows(db, "WHERE lower(final_label) = 'automobile'") if r[10] is None) == keys(new_regions)
    bulk = q.propagated_items(conn, q.ItemFilter(item="region"))
    assert [(b["image_id"], b["final_label"], b["propagated_from"]) for b in bulk] == [(r[0], r[12], r[14]) for r in new_regions]
    assert len(q.propagated_items(conn, q.ItemFilter())) == len(propagated)
    verdicts = q.cluster_reviews(conn, [cluster, cluster + 1])  # the cards' "relabeled as a whole"
    assert list(verdicts) == [cluster]
    assert [verdicts[cluster][k] for k in ("review_key", "status", "label")] == [f"cluster/region/{cluster}", "relabeled", "automobile"]
    conn.close()


def test_thumbnail_cache(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    text_image(["EXIT"], size=(800, 300)).save(root / "exit.png")
    cache = ThumbnailCache(tmp_path / "thumbs", root)
    plain = cache.get("ab" * 32, "exit.png", 200, (), 800, 300)
    assert plain.parent.name == "ab" and Image.open(plain).size == (200, 75)
    mtime = plain.stat().st_mtime_ns
    assert cache.get("ab" * 32, "exit.png", 200, (), 800, 300) == plain and plain.stat().st_mtime_ns == mtime
    boxed = cache.get("ab" * 32, "exit.png", 200, [Box((40, 40, 200, 90), "EXIT")], 800, 300)
    relabeled = cache.get("ab" * 32, "exit.png", 200, [Box((40, 40, 200, 90), "way out")], 800, 300)
    assert len({plain, boxed, relabeled}) == 3
    pixels = np.asarray(Image.open(boxed).convert("RGB")).astype(int)
    assert (np.abs(pixels - np.asarray(Image.open(plain).convert("RGB")).astype(int)).sum(axis=2) > 60).any()  # a box is drawn
    missing = cache.get("cd" * 32, "gone.png", 128, [Box((0, 0, 10, 10), "x")], 640, 480)
    assert missing.name.endswith("-missing.jpg") and Image.open(missing).size == (128, 96)
    nowhere = ThumbnailCache(tmp_path / "t2", None).get("ef" * 32, "exit.png", 64, (), 800, 300)
    assert nowhere.name.endswith("-missing.jpg")
    assert default_cache_dir(tmp_path / "results" / "annotations.sqlite") == (tmp_path / "results" / ".thumbnails").resolve()


# Pangrams and letters of each script the captions must draw (Czech, Polish, Greek, Russian)
PANGRAMS = {
    "cs": "Příliš žluťoučký kůň úpěl ďábelské ódy",
    "pl": "Zażółć gęślą jaźń",
    "el": "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία",
    "ru": "Съешь же ещё этих мягких французских булок",
}
LETTERS = {"cs": "řžůťďěň", "pl": "żółęśąźń", "el": "ξψφθβδλΩ", "ru": "жщъыэюяЖ"}


def dejavu(px: int):
    """DejaVu Sans from matplotlib's own data folder, found here without the module under test."""
    import matplotlib
    from PIL import ImageFont

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), px)


def caption_pixels(thumbnail: Image.Image, caption) -> np.ndarray:
    """The caption's rectangle of a drawn thumbnail, as grey levels."""
    x0, y0, x1, y1 = (round(v) for v in caption.rect)
    return np.asarray(thumbnail.convert("L").crop((x0, y0, x1, y1)), dtype=float)


def rendered_caption(caption, font) -> np.ndarray:
    """What the caption's rectangle holds when its label is drawn in ``font`` (white on its colour)."""
    from PIL import ImageDraw

    x0, y0, x1, y1 = (round(v) for v in caption.rect)
    patch = Image.new("RGB", (x1 - x0, y1 - y0), caption.color)
    ImageDraw.Draw(patch).text((caption.origin[0] - x0, caption.origin[1] - y0), caption.label, fill="white", font=font)
    return np.asarray(patch.convert("L"), dtype=float)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape or a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def differ(a: np.ndarray, b: np.ndarray) -> bool:
    """Two caption drawings differ by more than JPEG noise (a few clearly different pixels: ź vs ż)."""
    return a.shape != b.shape or int((np.abs(a - b) > 48).sum()) >= 3


def test_thumbnail_captions_in_every_script(tmp_path):
    """Captions in Czech, Polish, Greek and Russian are drawn with their own glyphs: each pangram's
    pixels are DejaVu Sans's drawing of it, and different letters never give the same pixels (a font
    without them, like Pillow's default, draws every one as the same missing-glyph box)."""
    from shardlens.dashboard.thumbnails import caption_layout

    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (640, 240), (90, 110, 130)).save(root / "plain.png")
    cache = ThumbnailCache(tmp_path / "thumbs", root)

    def draw(label: str) -> tuple[np.ndarray, object]:
        box = Box((40.0, 120.0, 600.0, 220.0), label)
        thumb = Image.open(cache.get("ab" * 32, "plain.png", 640, [box], 640, 240))
        (caption,) = caption_layout([box], 1.0, thumb.size)
        return caption_pixels(thumb, caption), caption

    for lang, text in PANGRAMS.items():
        pixels, caption = draw(text)
        assert caption.rect[2] - caption.rect[0] > 8 * len(text) * 0.5, (lang, caption)  # a line of text, not a few boxes
        assert correlation(pixels, rendered_caption(caption, dejavu(caption.px))) > 0.9, lang
        seen = {}
        for letter in LETTERS[lang]:
            glyph, _ = draw(f"a{letter}")
            for other, pixels_other in seen.items():
                assert differ(glyph, pixels_other), f"{lang}: {letter!r} and {other!r} draw alike"
            seen[letter] = glyph
        missing, _ = draw("a\U000f0000")  # a private-use code point no font here has: the missing-glyph box
        assert all(differ(g, missing) for g in seen.values()), lang


def test_launch_command_and_images_root(tmp_path):
    cmd = dashboard_command(DashboardServer(tmp_path / "a.sqlite", tmp_path / "r.sqlite", port=9999))
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"] and cmd[4].endswith("app.py")
    flags = dict(zip(cmd[5 : cmd.index("--")][::2], cmd[5 : cmd.index("--")][1::2]))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "9999"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1 :][:2] == ["--db", str((tmp_path / "a.sqlite").resolve())]
    (tmp_path / "config").mkdir()
    (tmp_path / "pics").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("images: pics\n")
    assert guess_images_root(tmp_path / "results" / "annotations.sqlite") == tmp_path / "pics"


def test_loopback_hosts_and_token_rules():
    for host in ("127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", None, "192.168.1.10", "10.0.0.1", "example.org", "localhost.example.org", "128.0.0.1"):
        assert not is_loopback(host), host
    assert check_access("127.0.0.1", None) is None and check_access("::1", "") is None
    token = "x" * MIN_TOKEN_LENGTH
    assert check_access("0.0.0.0", f" {token}\n") == token
    with pytest.raises(DashboardError, match="not a loopback address"):
        check_access("0.0.0.0", None)
    with pytest.raises(DashboardError, match=f"at least {MIN_TOKEN_LENGTH} characters"):
        check_access("127.0.0.1", "short")
    assert token_matches(token, token) and token_matches(f"{token} ", token)
    assert not token_matches("y" * MIN_TOKEN_LENGTH, token) and not token_matches(None, token) and not token_matches("", token)
    assert token_matches("žluťoučký-kůň-0123456789", "žluťoučký-kůň-0123456789")  # any text, compared as UTF-8 bytes


def test_review_refuses_a_public_host_without_token(tmp_path):
    """`shardlens review --host 0.0.0.0` without a token: one line, exit 2, before anything binds
    (the port stays free); a short token is refused the same way."""
    db = tmp_path / "results" / "annotations.sqlite"
    db.parent.mkdir()
    db.write_bytes(b"")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    base = [sys.executable, "-m", "shardlens.cli", "review", "--db", str(db), "--store", str(tmp_path / "r.sqlite"), "--port", str(port)]
    for extra, expected in (
        (["--host", "0.0.0.0"], "not a loopback address"),
        (["--host", "192.0.2.1"], "not a loopback address"),
        (["--host", "0.0.0.0", "--token", "short"], "at least"),
    ):
        proc = subprocess.run(base + extra, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2, (extra, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and (expected != "not a loopback address" or TOKEN_ENV in lines[0])
        assert "You can now view" not in proc.stdout  # Streamlit never started
    with socket.socket() as s:  # nothing holds the port
        s.bind(("0.0.0.0", port))
    proc = subprocess.run(base + ["--host", "0.0.0.0"], capture_output=True, text=True, env=dict(env, **{TOKEN_ENV: "  "}), timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "not a loopback address" in proc.stderr  # an empty token is no token


# ------------------------------------------------------------------------------ browser


def browser_or_skip() -> None:
    missing = [name for name in ("streamlit", "playwright") if importlib.util.find_spec(name) is None]
    if not CHROMIUM.exists():
        missing.append(str(CHROMIUM))
    if missing:
        reason = f"dashboard browser test needs {', '.join(missing)} (pip install -e '.[ui]'; .ci/install-browser.sh)"
        skip_unless_available("BROWSER", reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TOKEN = secrets.token_urlsafe(24)  # the token the main test dashboard is started with


def process_group(pgid: int) -> list[int]:
    """The processes of a process group (the `shardlens review` CLI and its Streamlit child)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


def start_dashboard(work: Path, db: Path, store: Path, images: Path, token: str | None = None) -> dict:
    """`shardlens review` (the user's command) on a free port of 127.0.0.1, in its own process
    group; the token, if any, in its environment as a user would set it."""
    port = free_port()
    log_path = work / "streamlit.log"
    log = log_path.open("w")
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", HOME=str(work))
    env.pop(TOKEN_ENV, None)
    if token is not None:
        env[TOKEN_ENV] = token
    cmd = [sys.executable, "-m", "shardlens.cli", "review", "--db", str(db), "--store", str(store), "--images", str(images), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=work)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, 9) if proc.poll() is None else None
            log.close()
            pytest.fail(f"dashboard did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    return {"url": url, "db": db, "store": store, "work": work, "images": images, "log": log_path, "proc": proc, "token": token, "_log": log}


def stop_dashboard(server: dict) -> None:
    proc = server["proc"]
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
    server["_log"].close()


@pytest.fixture(scope="module")
def app(workflow_run, tmp_path_factory):
    """The dashboard on a copy of the run's catalog, started by `shardlens review` with a token
    (on 127.0.0.1 a token is optional; given, it is enforced): pages open with ?token=."""
    browser_or_skip()
    work = tmp_path_factory.mktemp("app")
    db = copy_catalog(workflow_run / "results" / "annotations.sqlite", work / "results" / "annotations.sqlite")
    server = start_dashboard(work, db, work / "reviews" / "reviews.sqlite", workflow_run / "images", token=TOKEN)
    yield server
    stop_dashboard(server)


@pytest.fixture(scope="module")
def big_app(tmp_path_factory):
    """The dashboard without a token (127.0.0.1) on a synthetic catalog of 40 clusters and an
    'unclustered' bucket: more clusters than a chart legend holds."""
    browser_or_skip()
    work = tmp_path_factory.mktemp("big_app")
    db, images = work / "results" / "annotations.sqlite", work / "images"
    load_bench().synthesize_catalog(db, images, regions=1500, clusters=40)
    server = start_dashboard(work, db, work / "reviews" / "reviews.sqlite", images)
    yield server
    stop_dashboard(server)


@pytest.fixture(scope="module")
def propagation_app(tmp_path_factory):
    """The dashboard (no token, 127.0.0.1) on a catalog where a renamed cluster reaches images
    that came later: v1 has a.png 'EXIT' and b.png 'EXIT ->' (text cluster 0, renamed 'exit
    sign' through record_cluster_review); the incremental update to v2 brings c.png 'EXIT' and
    d.png 'EXIT >>', which fall into the cluster, and e.png 'HELLO', which does not."""
    browser_or_skip()
    from test_propagation import write_cache

    from shardlens.catalog import build_catalog
    from shardlens.reviews import record_cluster_review

    work = tmp_path_factory.mktemp("propagation_app")
    db, store, images = work / "results" / "annotations.sqlite", work / "reviews" / "reviews.sqlite", work / "images"
    images.mkdir()
    v1 = {"a.png": {"lines": ["EXIT"]}, "b.png": {"lines": ["EXIT ->"]}}
    build_catalog(write_cache(work / "v1", v1, [(0, "text", ["EXIT", "EXIT ->"])], {}), db, reviews_db=store, log=lambda m: None)
    record_cluster_review(db, store, 0, "relabeled", "exit sign", reviewer="ana", source="test")
    v2 = {**v1, "c.png": {"lines": ["EXIT"], "shard": "0001"}, "d.png": {"lines": ["EXIT >>"], "shard": "0001"}, "e.png": {"lines": ["HELLO"], "shard": "0001"}}
    stats = build_catalog(write_cache(work / "v2", v2, [(0, "text", ["EXIT", "EXIT ->", "EXIT >>"])], {}), db, reviews_db=store, log=lambda m: None)
    assert stats["mode"] == "incremental" and stats["propagated"]["cluster"] == 2
    server = start_dashboard(work, db, store, images)
    yield server
    stop_dashboard(server)


@pytest.fixture(scope="module")
def near_duplicate_app(tmp_path_factory):
    """The dashboard (no token, 127.0.0.1) on a catalog of real photos made by the real stages
    (tests/test_near_duplicates.py): the quality set's dog photo with a half-size JPEG q30 copy
    and a contrast-lowered copy (one near-duplicate group of three), a 2% crop (8 bits: in no
    group) and the giraffe."""
    browser_or_skip()
    from test_near_duplicates import dog_run

    run = tmp_path_factory.mktemp("near_duplicate_app") / "run"
    db = dog_run(run)
    server = start_dashboard(run, db, run / "reviews" / "reviews.sqlite", run / "images")
    yield server
    stop_dashboard(server)


@pytest.fixture(scope="module")
def browser():
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(60_000)
        yield context
        context.close()


def wait_idle(page) -> None:
    """Until the script run has finished (Streamlit renders a page progressively while it runs)."""
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(state="attached")


def with_token(server: dict, path: str = "/") -> str:
    """The server's URL for ``path``, with ?token= when the server wants one."""
    url = server["url"] + path
    if server.get("token"):
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"token": server["token"]})
    return url


def open_page(browser, url: str):
    page = browser.new_page()
    page.goto(url)
    page.locator("[data-testid='stSidebar']").wait_for()
    page.locator("[data-testid='stMain'] h3").first.wait_for()  # the view's heading: its run has started
    wait_idle(page)
    return page


def no_exception(page) -> None:
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


def store_rows(store: Path) -> dict[str, tuple]:
    """item_key -> (status, label, reviewer, source, reviewed_at) of the review store."""
    if not store.exists():
        return {}
    conn = sqlite3.connect(store)
    try:
        return {r[0]: tuple(r[1:]) for r in conn.execute("SELECT item_key, status, label, reviewer, source, reviewed_at FROM reviews")}
    finally:
        conn.close()


def first_queue_item(db: Path) -> dict:
    """Item 1 of the review queue as a new session opens it (every item, riskiest first)."""
    conn = q.open_catalog(db)
    try:
        item = q.item_page(conn, q.ItemFilter(), 0, 1, order="risk")[0]
    finally:
        conn.close()
    where = f"region/{item['region_id']}" if item["region_id"] is not None else f"line/{item['line_no']}"
    return {**item, "key": f"{item['image_id']}/{where}"}


def shown_cluster_counts(page) -> tuple[int, int]:
    """The cluster count of the sidebar and of the Clusters heading."""
    sidebar = page.locator("[data-testid='stSidebar'] .sl-count-clusters")
    heading = page.locator("[data-testid='stMain'] h3 .sl-count-clusters")
    return int(sidebar.get_attribute("data-count")), int(heading.get_attribute("data-count"))


@pytest.mark.slow
def test_browser_token_gates_every_session(app, browser):
    """Without the token a session sees only the token prompt: no review control, and neither the
    queue's key A nor a wrong token records anything. With it (typed, or in the URL, which is then
    cleaned) a review lands in the store under the reviewer name typed into the app. The token is
    on no process's command line."""
    # the token travels in the environment of `shardlens review` and its Streamlit child, never on argv
    group = process_group(app["proc"].pid)
    assert len(group) >= 2, group
    for pid in group:
        assert TOKEN not in Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    child = next(pid for pid in group if b"streamlit" in Path(f"/proc/{pid}/cmdline").read_bytes())
    assert f"{TOKEN_ENV}={TOKEN}".encode() in Path(f"/proc/{child}/environ").read_bytes().split(b"\0")

    before = store_rows(app["store"])
    page = browser.new_page()
    for url in (f"{app['url']}/?view=review", f"{app['url']}/?view=review&token=wrong-{TOKEN}"):
        page.goto(url)
        page.get_by_label("Access token").wait_for()
        wait_idle(page)
        no_exception(page)
        if "token=" in url:
            page.get_by_text("wrong access token").wait_for()
            page.wait_for_function("() => !location.search.includes('token=')")
        assert page.get_by_role("button", name="Accept & next").count() == 0
        assert page.locator("[data-testid='stSidebar']").count() == 0 and page.locator("[data-testid='stImage']").count() == 0
        page.locator("h2").first.click()
        page.keyboard.press("a")  # the queue's accept key does nothing here
        wait_idle(page)
    page.get_by_label("Access token").fill("not the token at all")
    page.get_by_role("button", name="Open the dashboard").click()
    page.get_by_text("wrong access token").wait_for()
    wait_idle(page)
    assert page.get_by_role("button", name="Accept & next").count() == 0
    assert store_rows(app["store"]) == before  # nothing recorded without the token
    # the right token, typed: the queue opens, and a review lands with the reviewer's name
    page.get_by_label("Access token").fill(TOKEN)
    page.get_by_role("button", name="Open the dashboard").click()
    page.get_by_text("Item 1 of").wait_for()
    wait_idle(page)
    no_exception(page)
    page.get_by_label("Reviewer").fill("Zoë Ångström")
    page.get_by_label("Reviewer").press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Accept & next").click()
    page.get_by_text("Item 2 of").wait_for()
    wait_idle(page)
    after = store_rows(app["store"])
    first = first_queue_item(app["db"])
    assert after[first["key"]][:4] == ("accepted", first["machine_label"], "Zoë Ångström", "dashboard")
    assert {k: v for k, v in after.items() if k != first["key"]} == {k: v for k, v in before.items() if k != first["key"]}
    page.close()
    # ?token= logs a session in, and leaves the address bar
    page = open_page(browser, with_token(app, "/?view=review"))
    page.get_by_text("Item 1 of").wait_for()
    page.wait_for_function("() => !location.search.includes('token=') && location.search.includes('view=review')")
    page.close()


@pytest.mark.slow
def test_browser_cluster_list_counts_and_thumbnails(app, browser):
    conn = sqlite3.connect(app["db"])
    expected = conn.execute(
        """SELECT c.cluster_id, c.size, (SELECT COUNT(*) FROM item_annotations a WHERE a.cluster_id = c.cluster_id),
                  (SELECT COUNT(*) FROM cluster_members m WHERE m.cluster_id = c.cluster_id)
           FROM clusters c LEFT JOIN cluster_risk k ON k.cluster_id = c.cluster_id
           ORDER BY c.cluster_id < 0, k.risk IS NULL, k.risk DESC, c.size DESC, c.cluster_id LIMIT 10"""  # riskiest first
    ).fetchall()
    n_clusters = conn.execute("SELECT COUNT(*) FROM clusters WHERE cluster_id >= 0").fetchone()[0]
    conn.close()
    page = open_page(browser, with_token(app))
    page.wait_for_function("n => document.querySelectorAll('.sl-cluster').length >= n", arg=len(expected))
    page.locator("[data-testid='stImage'] img").first.wait_for()
    no_exception(page)
    shown = [tuple(int(el.get_attribute(f"data-{name}")) for name in ("cluster-id", "size", "items", "texts")) for el in page.locator(".sl-cluster").all()]
    assert shown == expected and len(shown) > 1
    for el, (cid, size, items, texts) in zip(page.locator(".sl-cluster").all(), expected):
        assert f"{items:,} items" in el.inner_text() and f"size {size:,}" in el.inner_text()
    # one cluster count: the sidebar's and the heading's are HDBSCAN's clusters, the bucket aside
    assert shown_cluster_counts(page) == (n_clusters, n_clusters)
    assert f"{n_clusters:,} clusters" in page.locator("[data-testid='stSidebar']").inner_text()
    # thumbnails: at least 160 px on screen and in the file
    images = page.locator("[data-testid='stMain'] [data-testid='stImage'] img")
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stMain] [data-testid=stImage] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    sizes = images.evaluate_all("els => els.map(e => [e.getBoundingClientRect().width, e.naturalWidth, e.naturalHeight])")
    assert len(sizes) >= 2 and all(w >= 160 and max(nw, nh) >= 160 for w, nw, nh in sizes), sizes
    page.close()


@pytest.mark.slow
def test_browser_captions_in_every_script(app, browser):
    """A label typed into the queue in Czech, Polish, Greek and Russian is drawn on the image the
    browser shows with DejaVu Sans's glyphs (the image's pixels, fetched as the browser got them)."""
    from PIL import ImageFont

    from shardlens.dashboard.thumbnails import COLORS, caption_layout

    label = "Příliš žluťoučký kůň Zażółć Ωμέγα Щука"
    first = first_queue_item(app["db"])
    conn = q.open_catalog(app["db"])
    width = q.image_paths(conn, [first["image_id"]])[first["image_id"]]["width"]
    conn.close()
    assert first["bbox"], first
    page = open_page(browser, with_token(app, "/?view=review"))
    page.get_by_text("Item 1 of").wait_for()
    page.get_by_label("New label").fill(label)
    page.get_by_role("button", name="Relabel & next").click()
    page.get_by_text("Item 2 of").wait_for()
    wait_idle(page)
    page.get_by_role("button", name="◀ Back").click()
    page.get_by_text("Item 1 of").wait_for()
    wait_idle(page)
    no_exception(page)
    image = page.locator("[data-testid='stMain'] [data-testid='stImage'] img").first
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    body = page.request.get(urllib.parse.urljoin(app["url"] + "/", image.get_attribute("src"))).body()
    shown = Image.open(io.BytesIO(body)).convert("RGB")
    (caption,) = caption_layout([Box(tuple(first["bbox"]), label, COLORS["highlight"])], shown.width / width, shown.size)
    pixels = caption_pixels(shown, caption)
    assert correlation(pixels, rendered_caption(caption, dejavu(caption.px))) > 0.85
    # the assertion Pillow's default font fails: its drawing of the same label is another picture
    old = correlation(pixels, rendered_caption(caption, ImageFont.load_default(size=caption.px)))
    assert old < 0.6, old
    page.close()


@pytest.mark.slow
def test_browser_image_view_shows_boxes(app, browser):
    conn = q.open_catalog(app["db"])
    cat = q.find_image(conn, "cat.jpg")
    n_regions = conn.execute("SELECT COUNT(*) FROM regions WHERE image_id = ?", (cat,)).fetchone()[0]
    n_lines = conn.execute("SELECT COUNT(*) FROM ocr_lines WHERE image_id = ?", (cat,)).fetchone()[0]
    gate = conn.execute("SELECT decision, skip_reason FROM gate WHERE image_id = ?", (cat,)).fetchone()
    conn.close()
    page = open_page(browser, with_token(app, f"/?view=image&image={cat}"))
    page.locator(".sl-regions").wait_for(state="attached")
    page.locator("[data-testid='stTable']").first.wait_for()
    no_exception(page)
    assert page.locator(".sl-regions").get_attribute("data-count") == str(n_regions)
    assert page.locator(".sl-gate").get_attribute("data-decision") == gate[0]
    assert page.locator(".sl-gate").get_attribute("data-skip-reason") == (gate[1] or "")
    image = page.locator("[data-testid='stImage'] img").first
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert f"{n_regions} regions, {n_lines} OCR lines" in page.locator("[data-testid='stImage']").first.inner_text()
    table = page.locator("[data-testid='stTable']").first
    assert table.locator("tbody tr").count() == n_regions
    # the drawn image came from the thumbnail cache, with the boxes drawn (not the plain key)
    drawn = list((app["db"].parent / ".thumbnails" / cat[:2]).glob(f"{cat}-1024-*.jpg"))
    assert drawn and not any(p.stem.startswith(f"{cat}-1024-plain") for p in drawn)
    for region in range(n_regions):
        button = page.get_by_role("button", name=f"Relabel region {region}")
        button.wait_for()
        assert button.count() == 1
    page.close()


@pytest.mark.slow
def test_browser_relabel_lands_in_store_catalog_and_export(app, browser, tmp_path):
    conn = q.open_catalog(app["db"])
    cat = q.find_image(conn, "cat.jpg")
    conn.close()
    page = open_page(browser, with_token(app, f"/?view=image&image={cat}"))
    page.get_by_label("New label for region 0").fill("tabby cat")
    page.get_by_role("button", name="Relabel region 0").click()
    page.get_by_text("relabeled region 0: 1 review(s) recorded").wait_for()
    wait_idle(page)
    no_exception(page)
    key = f"{cat}/region/0"
    store = connect_store(app["store"])
    row = store.execute("SELECT status, label, source, reviewer FROM reviews WHERE item_key = ?", (key,)).fetchone()
    store.close()
    assert row[:3] == ("relabeled", "tabby cat", "dashboard") and row[3]
    catalog = sqlite3.connect(app["db"])
    assert catalog.execute("SELECT status, label FROM reviews WHERE item_key = ?", (key,)).fetchone() == ("relabeled", "tabby cat")
    catalog.close()
    paths = export_all(app["db"], tmp_path / "export")
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text(encoding="utf-8"))))
    exported = [r for r in rows if r["image_id"] == cat and r["region_id"] == "0"]
    assert len(exported) == 1 and exported[0]["final_label"] == "tabby cat" and exported[0]["review_status"] == "relabeled"
    # the page shows it too (after the rerun), and the box label is redrawn
    page.locator("[data-testid='stTable']").first.get_by_text("tabby cat").wait_for()
    page.close()


@pytest.mark.slow
def test_browser_accept_and_next_with_one_key(app, browser):
    page = open_page(browser, with_token(app, "/?view=review"))
    page.get_by_text("Item 1 of").wait_for()
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    first = first_queue_item(app["db"])
    before = store_rows(app["store"])
    page.locator("h3").first.click()  # focus the page, not an input
    page.keyboard.press("a")
    page.get_by_text("Item 2 of").wait_for()
    wait_idle(page)
    no_exception(page)
    after = store_rows(app["store"])
    assert after[first["key"]][:2] == ("accepted", first["machine_label"]) and after[first["key"]] != before.get(first["key"])
    assert len(after) == len(before) + (first["key"] not in before)  # this one item, nothing else
    page.close()


@pytest.mark.slow
def test_browser_propagated_labels_filter_and_bulk_accept(propagation_app, browser):
    """A new look-alike shows the label propagated from the renamed cluster, marked with where it
    comes from; the label-source filter lists only propagated items; "Accept propagated" turns
    them into reviews, so the catalog then says label_source 'review' and propagates nothing."""
    from test_propagation import image_id

    app = propagation_app
    page = open_page(browser, with_token(app, f"/?view=image&image={image_id('c.png')}"))
    marker = page.locator("[data-testid='stMain'] .sl-propagated").first
    marker.wait_for()
    no_exception(page)
    assert (marker.get_attribute("data-from"), marker.get_attribute("data-label")) == ("cluster/text/0", "exit sign")
    assert "propagated exit sign from the review of cluster 0" in marker.inner_text()
    page.close()

    page = open_page(browser, with_token(app, "/?view=review"))
    page.get_by_text("Review queue (5 items)").wait_for()
    assert page.locator("[data-testid='stSidebar'] .sl-count-propagated").get_attribute("data-count") == "2"
    page.get_by_role("combobox", name="Label source").click()
    page.get_by_role("option", name="propagated", exact=True).click()
    page.get_by_text("Review queue (2 items)").wait_for()
    wait_idle(page)
    no_exception(page)
    shown = []
    for n in (1, 2):  # every listed item carries the mark
        page.get_by_text(f"Item {n} of 2").wait_for()
        wait_idle(page)
        item = page.locator("[data-testid='stMain'] .sl-propagated")
        shown.append((item.get_attribute("data-from"), item.get_attribute("data-label")))
        if n == 1:
            page.get_by_role("button", name="Skip ▶").click()
    assert shown == [("cluster/text/0", "exit sign")] * 2
    page.get_by_role("button", name="Accept propagated (2)").click()
    page.get_by_text("accepted 2 propagated label(s): 2 review(s) recorded").wait_for()
    page.get_by_text("no item matches the filters").wait_for()
    wait_idle(page)
    no_exception(page)
    keys = {f"{image_id(p)}/line/0" for p in ("c.png", "d.png")}
    stored = store_rows(app["store"])
    assert {k: stored[k][:2] for k in keys} == {k: ("relabeled", "exit sign") for k in keys}
    catalog = sqlite3.connect(app["db"])
    rows = catalog.execute("SELECT image_id || '/line/' || line_no, final_label, label_source, propagated_from FROM final_annotations").fetchall()
    assert catalog.execute("SELECT COUNT(*) FROM propagated_labels").fetchone()[0] == 0
    catalog.close()
    assert {r[0]: r[1:] for r in rows if r[0] in keys} == {k: ("exit sign", "review", None) for k in keys}
    assert {r[0]: r[1:] for r in rows}[f"{image_id('e.png')}/line/0"] == ("HELLO", "machine", None)
    page.close()


@pytest.mark.slow
def test_browser_near_duplicate_group_and_a_review_reaching_it(near_duplicate_app, browser):
    """The image view shows the photo's near-duplicate group (count, the others' thumbnails and
    links); accepting its dog there shows up on a near copy as propagated from that review; the
    queue's near-duplicate filter lists only the group's items."""
    app = near_duplicate_app
    conn = q.open_catalog(app["db"])
    ids = {r["path"]: r["image_id"] for r in conn.execute("SELECT path, image_id FROM images")}
    in_groups = q.count_items(conn, q.ItemFilter(near_duplicates_only=True))
    group_regions = conn.execute("SELECT COUNT(*) FROM regions WHERE image_id IN (SELECT image_id FROM near_duplicates)").fetchone()[0]
    all_items = q.count_items(conn, q.ItemFilter())
    conn.close()
    original, half = ids["dogs/dog_original.jpg"], ids["dogs/dog_half_q30.jpg"]
    assert in_groups == group_regions == 18 and all_items == 26  # no OCR lines: the gate skips these photos

    page = open_page(browser, with_token(app, f"/?view=image&image={original}"))
    group = page.locator("[data-testid='stMain'] .sl-near-duplicates")
    group.wait_for(state="attached")
    no_exception(page)
    assert group.get_attribute("data-count") == "3"
    page.get_by_text("Near-duplicates: 3 images in this group").wait_for()
    members = page.locator("[data-testid='stMain'] .sl-near-duplicate")
    members.nth(1).wait_for(state="attached")
    images = page.locator("[data-testid='stMain'] [data-testid='stImage'] img")
    images.nth(2).wait_for()  # the image itself and the two others' thumbnails
    wait_idle(page)
    shown = members.evaluate_all("els => els.map(e => e.dataset.path)")
    assert sorted(shown) == ["dogs/dog_contrast.jpg", "dogs/dog_half_q30.jpg"]
    assert images.count() == 3
    # the crop (8 bits away) and the giraffe are in no group: their pages show none
    page.goto(with_token(app, f"/?view=image&image={ids['dogs/dog_crop2.jpg']}"))
    page.get_by_text("Regions (6)").wait_for()
    wait_idle(page)
    assert page.locator("[data-testid='stMain'] .sl-near-duplicates").count() == 0
    page.close()

    page = open_page(browser, with_token(app, f"/?view=image&image={original}"))
    page.get_by_role("button", name="Accept region 0").click()
    page.get_by_text("accepted region 0: 1 review(s) recorded").wait_for()
    wait_idle(page)
    no_exception(page)
    page.get_by_role("button", name="Open dog_half_q30.jpg").click()
    page.locator("[data-testid='stMain'] h3").get_by_text("dogs/dog_half_q30.jpg").wait_for()
    marker = page.locator("[data-testid='stMain'] .sl-propagated").first
    marker.wait_for()
    wait_idle(page)
    no_exception(page)
    assert page.locator("[data-testid='stMain'] .sl-propagated").count() == 1
    assert (marker.get_attribute("data-from"), marker.get_attribute("data-label")) == (f"{original}/region/0", "dog")
    assert f"propagated dog from the review of region 0 of image {original[:12]}" in marker.inner_text()
    catalog = sqlite3.connect(app["db"])
    row = catalog.execute("SELECT final_label, label_source, propagated_from FROM final_annotations WHERE image_id = ? AND region_id = 1", (half,)).fetchone()
    rule = catalog.execute("SELECT rule FROM propagated_labels WHERE item_key = ?", (f"{half}/region/1",)).fetchone()
    catalog.close()
    assert row == ("dog", "propagated", f"{original}/region/0") and rule == ("near_duplicate",)
    page.close()

    page = open_page(browser, with_token(app, "/?view=review"))
    page.get_by_text(f"Review queue ({all_items} items)").wait_for()
    page.locator("[data-testid='stSidebar'] label").filter(has_text="In near-duplicate groups only (3 images)").click()
    page.get_by_text(f"Review queue ({in_groups} items)").wait_for()
    wait_idle(page)
    no_exception(page)
    page.close()


@pytest.mark.slow
def test_browser_map_legend_searchable_beyond_30_clusters(big_app, browser):
    """40 clusters: the map's legend lists every cluster of the sample with its colour, the same
    cluster count as the sidebar and the Clusters heading, and a search narrows it."""
    conn = q.open_catalog(big_app["db"])
    n_clusters = q.count_clusters(conn)
    assert n_clusters == 40 and q.count_cluster_rows(conn) == 41  # the 'unclustered' bucket too
    sample = q.embedding_sample(conn, 3000)
    labels = {r["cluster_id"]: r["label"] for r in sample}
    conn.close()
    assert sum(1 for cid in labels if cid >= 0) > 30
    page = open_page(browser, with_token(big_app))
    no_exception(page)
    assert shown_cluster_counts(page) == (40, 40)  # not 41: the bucket is not a cluster
    assert page.locator(".sl-cluster").count() == 10
    page.close()
    page = open_page(browser, with_token(big_app, "/?view=map"))
    page.locator(".sl-legend-item").first.wait_for()
    page.locator("[data-testid='stVegaLiteChart']").first.wait_for()
    no_exception(page)
    items = page.locator(".sl-legend-item")
    assert sorted(int(i) for i in items.evaluate_all("els => els.map(e => e.dataset.clusterId)")) == sorted(labels)
    points = items.evaluate_all("els => els.map(e => +e.dataset.points)")
    assert points == sorted(points, reverse=True) and sum(points) == len(sample)
    colours = items.evaluate_all("els => els.map(e => getComputedStyle(e.querySelector('span')).backgroundColor)")
    assert len(set(colours)) == len(colours)  # one colour per cluster
    assert f"of the {n_clusters:,} clusters" in page.locator("[data-testid='stMain']").inner_text()
    search = page.get_by_label("Find a cluster on the map (part of its label, or its number)")
    target = max(cid for cid in labels if cid >= 0)
    word = labels[target].split()[-1].lower()
    for query, wanted in ((f"#{target}", {target}), (word.upper(), {c for c, l in labels.items() if word in l.lower() or word == str(c)})):
        search.fill(query)
        search.press("Enter")
        page.wait_for_function(
            "n => document.querySelector('.sl-legend-head') && +document.querySelector('.sl-legend-head').dataset.matches === n",
            arg=len(wanted),
        )
        wait_idle(page)
        found = {int(i) for i in page.locator(".sl-legend-item").evaluate_all("els => els.map(e => e.dataset.clusterId)")}
        assert found == wanted, (query, found, wanted)
    page.close()


@pytest.mark.slow
def test_browser_screenshot_for_readme(app, browser, tmp_path):
    """docs/dashboard.png: the review queue (image with its box, 'Accept & next', the item list).
    Written when missing or with SHARDLENS_UPDATE_SCREENSHOT=1, else into the test's folder."""
    page = open_page(browser, with_token(app, "/?view=review"))
    page.get_by_text("Item 1 of").wait_for()
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    image = page.locator("[data-testid='stImage'] img").first
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    page.wait_for_timeout(500)  # the data grid paints after it is attached
    no_exception(page)
    png = Image.open(io.BytesIO(page.screenshot()))
    small = png.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    target = SCREENSHOT if (not SCREENSHOT.exists() or os.environ.get("SHARDLENS_UPDATE_SCREENSHOT") == "1") else tmp_path / "dashboard.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    small.save(target, optimize=True)
    assert target.stat().st_size < 400_000
    page.close()


# ----------------------------------------------------------- the app without a browser


def test_app_flows_in_streamlit_apptest(tmp_path, monkeypatch):
    """The app's script run by Streamlit's AppTest on a synthetic catalog: every view renders;
    'Accept & next', a cluster rename and a relabel go through record_reviews."""
    if importlib.util.find_spec("streamlit") is None:
        skip_unless_available("BROWSER", "streamlit is not installed (pip install -e '.[ui]')")
    from streamlit.testing.v1 import AppTest

    bench = load_bench()
    db, store, images = tmp_path / "results" / "annotations.sqlite", tmp_path / "reviews" / "reviews.sqlite", tmp_path / "images"
    bench.synthesize_catalog(db, images, regions=600, clusters=12)
    for name, value in (("SHARDLENS_DB", db), ("SHARDLENS_REVIEWS", store), ("SHARDLENS_IMAGES", images), (TOKEN_ENV, TOKEN)):
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(sys, "argv", ["app.py"])
    at = AppTest.from_file(str(REPO / "shardlens" / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    # a session without the token gets the prompt and nothing else
    assert [t.key for t in at.text_input] == ["auth_token"] and [b.label for b in at.button] == ["Open the dashboard"]
    at.text_input(key="auth_token").input("wrong" * 5)
    at.button[0].click().run()
    assert any("wrong access token" in e.value for e in at.error) and not store.exists()
    at.text_input(key="auth_token").input(TOKEN)
    at.button[0].click().run()
    assert not at.exception, at.exception
    cards = [m.value for m in at.markdown if 'class="sl-cluster"' in m.value]
    assert len(cards) == 10
    for view in ("Review queue", "Image", "Map", "Clusters"):
        at.radio(key="view").set_value(view).run()
        assert not at.exception, (view, at.exception)

    def stored() -> dict[str, tuple]:
        if not store.exists():
            return {}
        conn = sqlite3.connect(store)
        try:
            return {k: (s, label) for k, s, label in conn.execute("SELECT item_key, status, label FROM reviews")}
        finally:
            conn.close()

    # rename the largest cluster: every one of its items is relabeled
    conn = q.open_catalog(db)
    top = q.cluster_page(conn, 0, 1)[0]
    conn.close()
    at.text_input(key=f"rename-{top.cluster_id}").input("automobile")
    next(b for b in at.button if b.label == "Rename cluster").click()
    at.run()
    assert not at.exception, at.exception
    assert sum(1 for s in stored().values() if s == ("relabeled", "automobile")) == top.items
    # the queue, unreviewed only: Accept & next records one review and the next item moves up
    at.radio(key="view").set_value("Review queue").run()
    at.checkbox(key="f_unreviewed").check().run()
    conn = q.open_catalog(db)
    remaining = q.count_items(conn, q.ItemFilter(unreviewed_only=True))
    first = q.item_page(conn, q.ItemFilter(unreviewed_only=True), 0, 1)[0]
    conn.close()
    assert any(f"Review queue ({remaining:,} items)" in m.value for m in at.markdown)
    at.button(key="q_accept").click().run()
    assert not at.exception, at.exception
    key = f"{first['image_id']}/region/{first['region_id']}" if first["region_id"] is not None else f"{first['image_id']}/line/{first['line_no']}"
    assert stored()[key] == ("accepted", first["machine_label"])
    assert any(f"Review queue ({remaining - 1:,} items)" in m.value for m in at.markdown)
    # relabel the current item from the queue's form
    at.text_input(key="q_label").input("something else")
    next(b for b in at.button if b.label == "Relabel & next").click()
    at.run()
    assert not at.exception, at.exception
    assert sum(1 for s in stored().values() if s == ("relabeled", "something else")) == 1
    # an OCR line relabeled: the other lines of its text (and its look-alikes) carry its label,
    # propagated; the label-source filter lists them and "Reject propagated" rejects each one
    conn = sqlite3.connect(db)
    line = conn.execute(
        "SELECT image_id, line_no FROM ocr_lines WHERE text = (SELECT text FROM ocr_lines GROUP BY text ORDER BY COUNT(*) DESC, text LIMIT 1) ORDER BY image_id LIMIT 1"
    ).fetchone()
    conn.close()
    record_reviews([Review(line[0], None, line[1], "relabeled", "way out")], db, store, "test")
    at.checkbox(key="f_unreviewed").uncheck().run()
    at.selectbox(key="f_source").set_value("propagated").run()
    assert not at.exception, at.exception
    conn = q.open_catalog(db)
    propagated = q.propagated_items(conn, q.ItemFilter())
    conn.close()
    assert propagated and all(p["propagated_from"] for p in propagated)
    assert any(f"Review queue ({len(propagated):,} items)" in m.value for m in at.markdown)
    assert any('class="sl-propagated"' in m.value for m in at.markdown)
    keys = [f"{p['image_id']}/{p['item'].replace('text', 'line')}/{p['line_no'] if p['item'] == 'text' else p['region_id']}" for p in propagated]
    conn = q.open_catalog(db)
    first = q.item_page(conn, q.ItemFilter(label_source="propagated"), 0, 1)[0]
    conn.close()
    first_key = f"{first['image_id']}/line/{first['line_no']}"
    at.button(key="q_accept").click().run()  # A on a propagated label accepts that label
    assert not at.exception, at.exception
    assert stored()[first_key] == ("relabeled", "way out")
    at.button(key="bulk_reject").click().run()
    assert not at.exception, at.exception
    assert {k: stored()[k] for k in keys if k != first_key} == {k: ("rejected", None) for k in keys if k != first_key}
    assert any("no item matches the filters" in i.value for i in at.info)


# ------------------------------------------------------------- triage: risk order and audits


@pytest.fixture(scope="module")
def triage_app(tmp_path_factory):
    """The dashboard (no token, 127.0.0.1) on a catalog with three text clusters: cluster 0 'OPEN'
    (8 lines read with confidence 0.9, its members close to its name: low risk) is the larger one,
    cluster 1 'EXIT' (7 lines read with confidence 0.6, 'EXIT ->' far from its name: higher risk)
    the riskier one; cluster 2 'STOP' (3 lines) is too small for an audit of 5 to save actions."""
    browser_or_skip()
    from test_propagation import unit, write_cache

    from shardlens.catalog import build_catalog

    work = tmp_path_factory.mktemp("triage_app")
    db, store, images = work / "results" / "annotations.sqlite", work / "reviews" / "reviews.sqlite", work / "images"
    images.mkdir()
    spec = {f"open{n}.png": {"lines": ["OPEN" if n % 2 else "OPEN 24"]} for n in range(8)}
    spec |= {f"exit{n}.png": {"lines": ["EXIT" if n % 2 else "EXIT ->"], "confidence": 0.6} for n in range(7)}
    spec |= {f"stop{n}.png": {"lines": ["STOP"]} for n in range(3)}
    vectors = {"OPEN": unit(1.0, 2, 3), "OPEN 24": unit(0.98, 2, 3), "EXIT": unit(1.0, 0, 1), "EXIT ->": unit(0.5, 0, 1), "STOP": unit(1.0, 4, 5)}
    clusters = [(0, "text", ["OPEN", "OPEN 24"]), (1, "text", ["EXIT", "EXIT ->"]), (2, "text", ["STOP"])]
    build_catalog(write_cache(work / "cache", spec, clusters, vectors), db, reviews_db=store, log=lambda m: None)
    server = start_dashboard(work, db, store, images)
    yield server
    stop_dashboard(server)


def audit_cell(page, item_key: str):
    """The column of one audit sample item (its thumbnail, its verdict and its two buttons)."""
    return page.locator("[data-testid='stColumn']").filter(has=page.locator(f".sl-audit-item[data-item='{item_key}']")).last


def open_cluster_audit(page, cluster_id: int) -> list[str]:
    """Click the cluster's "Audit and accept"; the sample's item keys once the audit shows."""
    page.locator(f".st-key-audit-c{cluster_id}").get_by_role("button", name="Audit and accept").click()
    audit = page.locator(f".sl-audit[data-audit^='audit/text/{cluster_id}/']")
    audit.wait_for()
    wait_idle(page)
    no_exception(page)
    return [el.get_attribute("data-item") for el in page.locator(".sl-audit-item").all()]


@pytest.mark.slow
def test_browser_clusters_open_riskiest_first(triage_app, browser):
    conn = sqlite3.connect(triage_app["db"])
    risks = dict(conn.execute("SELECT cluster_id, risk FROM cluster_risk"))
    sizes = [c for (c,) in conn.execute("SELECT cluster_id FROM clusters WHERE cluster_id >= 0 ORDER BY size DESC")]
    conn.close()
    assert risks[1] > max(risks[0], risks[2]) and sizes[0] == 0, "the fixture must make the smaller cluster the riskier"
    page = open_page(browser, triage_app["url"])
    page.wait_for_function("() => document.querySelectorAll('.sl-triage').length >= 2")
    no_exception(page)
    shown = [int(el.get_attribute("data-cluster-id")) for el in page.locator(".sl-cluster").all()]
    assert shown[:2] == [1, 0] and shown[-1] == -1  # riskiest first, the bucket last
    shown_risks = [float(el.get_attribute("data-risk")) for el in page.locator(".sl-triage").all()]
    assert shown_risks == pytest.approx([risks[c] for c in shown[:-1]], abs=1e-6) and shown_risks == sorted(shown_risks, reverse=True)
    assert f"risk {risks[1]:.2f}" in page.locator(".sl-triage").first.inner_text()
    assert "riskiest first" in page.locator("[data-testid='stMain'] h3").first.inner_text()
    assert page.locator(".sl-precision-overall").get_attribute("data-estimate") == ""
    page.close()


@pytest.mark.slow
def test_browser_a_rejected_audit_item_blocks_the_bulk_accept(triage_app, browser):
    page = open_page(browser, triage_app["url"])
    sample = open_cluster_audit(page, 1)
    assert len(sample) == 5  # reviews.audit_size, of cluster 1's 7 items
    accept = page.locator(".st-key-audit-accept-1").get_by_role("button", name="Accept the cluster")
    assert accept.is_disabled()
    for n, key in enumerate(sample):
        status = "rejected" if n == len(sample) - 1 else "accepted"
        audit_cell(page, key).get_by_role("button", name="Reject" if status == "rejected" else "Accept").click()
        page.locator(f".sl-audit-item[data-item='{key}'][data-verdict='{status}']").wait_for()
        wait_idle(page)
        if status == "accepted":
            assert page.locator(".st-key-audit-accept-1").get_by_role("button", name="Accept the cluster").is_disabled() == (n < len(sample) - 1)
    page.locator(".sl-audit[data-status='failed']").wait_for()
    page.locator(".sl-audit-blocked").wait_for()
    wait_idle(page)
    no_exception(page)
    assert page.locator(".st-key-audit-accept-1").get_by_role("button", name="Accept the cluster").is_disabled()
    stored = store_rows(triage_app["store"])
    assert {k: stored[k][0] for k in sample} == {**{k: "accepted" for k in sample[:-1]}, sample[-1]: "rejected"}
    conn = sqlite3.connect(triage_app["store"])
    assert conn.execute("SELECT COUNT(*) FROM cluster_reviews").fetchone()[0] == 0
    assert conn.execute("SELECT status, accepted, audited FROM audits WHERE cluster_id = 1").fetchall() == [("failed", 4, 5)]
    conn.close()
    page.close()


@pytest.mark.slow
def test_browser_a_cluster_too_small_to_save_actions_offers_no_audit(triage_app, browser):
    """Cluster 2 has 3 items: an audit of 5 and a bulk accept (6 actions) cannot beat reviewing
    them (shardlens.audits.audit_saves_actions), so "Audit and accept" is disabled and says why;
    the 8-item cluster 0 (8 > 6) offers it."""
    page = open_page(browser, triage_app["url"])
    page.locator(".sl-audit-none[data-cluster-id='2']").wait_for()
    no_exception(page)
    assert page.locator(".st-key-audit-c2").get_by_role("button", name="Audit and accept").is_disabled()
    assert "3 unreviewed: too few to audit (5 + 1 actions); review them one by one" in page.locator(".sl-audit-none[data-cluster-id='2']").inner_text()
    assert page.locator(".sl-audit-none[data-cluster-id='0']").count() == 0
    assert page.locator(".st-key-audit-c0").get_by_role("button", name="Audit and accept").is_enabled()
    conn = sqlite3.connect(triage_app["store"])
    assert conn.execute("SELECT COUNT(*) FROM audits WHERE cluster_id = 2").fetchone()[0] == 0
    conn.close()
    page.close()


@pytest.mark.slow
def test_browser_a_passing_audit_accepts_the_cluster_and_shows_precision(triage_app, browser):
    page = open_page(browser, triage_app["url"])
    sample = open_cluster_audit(page, 0)
    assert len(sample) == 5  # reviews.audit_size
    for key in sample:
        audit_cell(page, key).get_by_role("button", name="Accept").click()
        page.locator(f".sl-audit-item[data-item='{key}'][data-verdict='accepted']").wait_for()
        wait_idle(page)
    accept = page.locator(".st-key-audit-accept-0").get_by_role("button", name="Accept the cluster")
    assert accept.is_enabled()
    accept.click()
    page.get_by_text("accepted cluster text/0 after its audit: 3 review(s) recorded").wait_for()
    page.locator(".sl-triage[data-cluster-id='0'][data-estimate='1.0000']").wait_for()
    page.locator(".sl-precision-overall[data-estimate='1.0000']").wait_for()
    wait_idle(page)
    no_exception(page)
    assert "precision 1.00 (95% Wilson 0.57–1.00; 5 of 5 audited items accepted)" in page.locator(".sl-triage[data-cluster-id='0']").inner_text()
    conn = sqlite3.connect(triage_app["db"])  # the catalog: the cluster review and every item accepted
    assert conn.execute("SELECT review_key, status FROM cluster_reviews").fetchall() == [("cluster/text/0", "accepted")]
    assert conn.execute("SELECT COUNT(*) FROM final_annotations WHERE cluster_id = 0 AND review_status = 'accepted'").fetchone()[0] == 8
    conn.close()
    page.close()
