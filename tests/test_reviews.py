"""Review round trip for real: export the sheet, edit it, import it, re-run the workflow on a
changed image set, and the reviewed labels are still there; a bad sheet changes nothing."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys

import pytest

from conftest import snakemake, text_image, write_config

pytestmark = pytest.mark.slow


def read_sheet(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_sheet(path, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def shardlens(workdir, *args):
    return subprocess.run([sys.executable, "-m", "shardlens.cli", *args], cwd=workdir, capture_output=True, text=True)


def store_rows(workdir):
    db = workdir / "reviews" / "reviews.sqlite"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    rows = sorted(conn.execute("SELECT item_key, status, label FROM reviews").fetchall())
    conn.close()
    return rows


def test_review_round_trip_survives_reruns(tmp_path, tiny_images):
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 3})
    snakemake(workdir, "--cores", "2")
    rows = read_sheet(workdir / "results" / "annotations.csv")
    assert {"review_label", "review_status", "machine_label", "cluster_id", "confidence", "ocr_text"} <= set(rows[0])

    cat = next(r for r in rows if r["path"] == "cat.jpg" and r["item"] == "region" and r["region_id"] == "0")
    sign = next(r for r in rows if r["item"] == "text" and r["text"] == "OPEN 24 HOURS")
    cat.update(review_status="relabeled", review_label="tabby cat", reviewer="ana")
    sign.update(review_status="accepted")
    write_sheet(tmp_path / "reviewed.csv", rows)

    # a sheet with bad rows is rejected whole, naming each line, and nothing changes
    bad = [dict(r) for r in rows]
    bad[0].update(review_status="maybe")
    bad[1].update(image_id="0" * 64, review_status="accepted")
    write_sheet(tmp_path / "bad.csv", bad)
    proc = shardlens(workdir, "import-reviews", str(tmp_path / "bad.csv"))
    assert proc.returncode == 2
    assert "line 2, column review_status: 'maybe' is not one of" in proc.stderr
    assert "line 3, column image_id: '0000000000000000'... is not in the catalog" in proc.stderr  # both listed
    assert store_rows(workdir) == []

    proc = shardlens(workdir, "import-reviews", str(tmp_path / "reviewed.csv"))
    assert proc.returncode == 0, proc.stderr
    assert len(store_rows(workdir)) == 2

    def labels():
        conn = sqlite3.connect(workdir / "results" / "annotations.sqlite")
        out = dict(conn.execute("SELECT path, final_label FROM path_labels").fetchall())
        conn.close()
        return out

    assert labels()["cat.jpg"] == "tabby cat"
    assert labels()["sub/cat_copy.jpg"] == "tabby cat"  # same content, same image

    # the workflow re-exports with the reviewed label; then a changed image and a re-run keep it
    snakemake(workdir, "--cores", "2")
    sheet = read_sheet(workdir / "results" / "annotations.csv")
    again = next(r for r in sheet if r["path"] == "cat.jpg" and r["region_id"] == "0")
    assert (again["final_label"], again["review_status"], again["review_label"]) == ("tabby cat", "relabeled", "tabby cat")
    assert again["machine_label"] != "tabby cat"

    text_image(["SALE TODAY"]).save(tiny_images / "sub" / "street.png")
    snakemake(workdir, "--cores", "2")
    assert labels()["cat.jpg"] == "tabby cat"
    sheet = read_sheet(workdir / "results" / "annotations.csv")
    assert any(r["final_label"] == "tabby cat" for r in sheet)
    assert any(r["text"] == "SALE TODAY" for r in sheet)
    assert len(store_rows(workdir)) == 2


def test_conflicting_duplicate_rows_are_refused(tmp_path, tiny_images):
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 2})
    snakemake(workdir, "--cores", "2")
    rows = read_sheet(workdir / "results" / "annotations.csv")
    region = next(r for r in rows if r["item"] == "region")
    first = {**region, "review_status": "relabeled", "review_label": "A"}
    second = {**region, "review_status": "relabeled", "review_label": "B"}
    write_sheet(tmp_path / "dup.csv", [first, second])
    proc = shardlens(workdir, "import-reviews", str(tmp_path / "dup.csv"))
    assert proc.returncode == 2 and "line 3: conflicts with line 2" in proc.stderr
    # through the workflow rule as well
    write_sheet(tmp_path / "ok.csv", [first])
    write_config(workdir, images=str(tiny_images), shards={"count": 2}, reviews={"import_csv": str(tmp_path / "ok.csv")})
    snakemake(workdir, "--cores", "1", "import_reviews")
    assert store_rows(workdir)[0][1:] == ("relabeled", "A")
