"""CSV cells cannot start a spreadsheet formula, and the review round trip stays exact."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest
from PIL import Image

from shardlens.spreadsheet import csv_cell, csv_value

from conftest import snakemake, text_image, write_config

HOSTILE = ["=cmd|' /C calc'!A0", '=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "\tx", "\rx"]
HARMLESS = ["plain", "it's", "'abc", "", "a=b", "12"]
QUOTED = ["'=x", "''+y", "'@z"]


@pytest.mark.parametrize("value", HOSTILE + HARMLESS + QUOTED)
def test_cells_are_safe_and_the_round_trip_is_exact(value):
    cell = csv_cell(value)
    assert not cell or cell[0] not in "=+-@\t\r"
    assert csv_value(cell) == value


def test_image_urls_are_percent_encoded():
    from urllib.parse import parse_qs, urlsplit

    from shardlens.exports import image_url

    path = "=cmd|' /C calc'!A0 #1?&%ü.jpg"
    url = image_url("/data/local-files/?d=", path)
    assert " " not in url and "#" not in url and parse_qs(urlsplit(url).query)["d"] == [path]
    assert image_url("http://host/images/", "a b/c.jpg") == "http://host/images/a%20b/c.jpg"


def test_only_text_is_touched():
    assert csv_cell(-0.5) == -0.5 and csv_cell(None) is None and csv_cell(3) == 3
    assert [csv_cell(v) for v in HARMLESS] == HARMLESS


@pytest.mark.slow
def test_hostile_names_and_texts_end_to_end(tmp_path):
    """A file named like a formula, in a folder named like one, and a broken one: the CSV exports
    and the ingest report neutralise them, JSON and SQLite keep them, a reviewed sheet re-imports."""
    from skimage import data

    images = tmp_path / "images"
    folder = images / "=cmd|' "
    folder.mkdir(parents=True)
    Image.fromarray(data.chelsea()).save(folder / "C calc'!A0.jpg", quality=90)
    text_image(["@SUM(1+1)"]).save(images / "+sign.png")
    (images / "-broken.jpg").write_bytes(b"not an image")
    workdir = tmp_path / "run"
    write_config(workdir, images=str(images), shards={"count": 2})
    snakemake(workdir, "--cores", "2")

    with (workdir / "results" / "annotations.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    def number(cell: str) -> bool:
        try:
            float(cell)
        except ValueError:
            return False
        return True

    cells = [cell for row in rows for cell in row.values() if cell]
    assert cells and not [c for c in cells if c[0] in "=+-@\t\r" and not number(c)]  # -1 (a cluster id) is a number
    assert "'@SUM(1+1)" in {row["text"] for row in rows}  # an OCR line
    paths = {row["path"] for row in rows}
    assert "'=cmd|' /C calc'!A0.jpg" in paths and "'+sign.png" in paths
    with (workdir / "results" / "ingest_report.csv").open(newline="", encoding="utf-8") as handle:
        report = list(csv.DictReader(handle))
    assert [r["path"] for r in report] == ["'-broken.jpg"]

    # the true values elsewhere
    tasks = json.loads((workdir / "results" / "labelstudio_tasks.json").read_text())
    assert "/data/local-files/?d=%3Dcmd%7C%27%20/C%20calc%27%21A0.jpg" in {t["data"]["image"] for t in tasks}
    exported = json.loads((workdir / "results" / "annotations.json").read_text())
    assert "=cmd|' /C calc'!A0.jpg" in {r["path"] for r in exported}
    conn = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    assert "=cmd|' /C calc'!A0.jpg" in {p for (p,) in conn.execute("SELECT path FROM paths")}
    conn.close()

    # a reviewed sheet goes back in: the escaped label arrives as typed
    cat = next(r for r in rows if r["item"] == "region" and r["path"].startswith("'=cmd"))
    cat["review_status"], cat["review_label"] = "relabeled", "'=tabby"  # true value: =tabby
    sheet = tmp_path / "reviewed.csv"
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    snakemake(workdir, "--cores", "2", "import_reviews", "--config", f"reviews={{import_csv: {sheet}}}")
    store = sqlite3.connect(workdir / "reviews" / "reviews.sqlite")
    assert store.execute("SELECT label FROM reviews").fetchall() == [("=tabby",)]
    store.close()
