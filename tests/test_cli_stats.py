"""`shardlens stats` and `shardlens show` against a real catalog (the demo run's), each number checked
against SQL run here, and their errors: one line, exit code 2, nothing created."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from shardlens.review_store import Review
from shardlens.reviews import record_reviews

from conftest import one_line_error
from conftest import shardlens_cli as shardlens


def sql(db: Path, query: str, *params) -> list[tuple]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


@pytest.fixture()
def catalog(demo_run, tmp_path) -> Path:
    """A copy of the demo run's catalog (the run is shared and read-only)."""
    db = tmp_path / "annotations.sqlite"
    source = sqlite3.connect(f"file:{demo_run / 'results/annotations.sqlite'}?mode=ro", uri=True)
    target = sqlite3.connect(db)
    source.backup(target)
    source.close()
    target.close()
    return db


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("command", [["stats"], ["show", "a.jpg", "--db"]])
def test_missing_or_foreign_catalog_is_one_line_and_creates_nothing(tmp_path, command):
    missing = tmp_path / "missing.sqlite"
    one_line_error(shardlens(*command, str(missing), cwd=tmp_path), str(missing), "no such catalog")
    assert not missing.exists()
    junk = tmp_path / "notes.sqlite"
    junk.write_text("not a database")
    one_line_error(shardlens(*command, str(junk), cwd=tmp_path), str(junk), "not a shardlens catalog")
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    one_line_error(shardlens(*command, str(other), cwd=tmp_path), str(other), "not a shardlens catalog")
    assert sql(other, "SELECT name FROM sqlite_master") == [("t",)]  # nothing added to it


def test_default_catalog_missing(tmp_path):
    one_line_error(shardlens("stats", cwd=tmp_path), "results/annotations.sqlite")
    one_line_error(shardlens("show", "x.jpg", cwd=tmp_path), "results/annotations.sqlite")
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------------------------- stats


@pytest.mark.slow
def test_stats_json_matches_the_catalog(catalog, tmp_path):
    before = catalog.read_bytes()
    proc = shardlens("stats", str(catalog), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["files"] == {
        "files": sql(catalog, "SELECT COUNT(*) FROM paths")[0][0],
        "images": sql(catalog, "SELECT COUNT(DISTINCT image_id) FROM paths WHERE status = 'ok'")[0][0],
        "failed": sql(catalog, "SELECT COUNT(*) FROM paths WHERE status != 'ok'")[0][0],
    }
    assert stats["files"]["images"] > 0
    assert stats["failed"] == dict(sql(catalog, "SELECT error, COUNT(*) FROM paths WHERE status != 'ok' GROUP BY error"))
    gate = {(f"{d}: {r}" if r else d): n for d, r, n in sql(catalog, "SELECT decision, skip_reason, COUNT(*) FROM gate GROUP BY 1, 2")}
    assert stats["gate"] == gate and sum(gate.values()) == stats["files"]["images"]
    per_class = sql(catalog, "SELECT caption, COUNT(*) FROM regions GROUP BY caption")
    assert stats["regions_per_class"] == dict(per_class) and len(per_class) > 1
    assert list(stats["regions_per_class"].values()) == sorted(stats["regions_per_class"].values(), reverse=True)
    assert stats["lines"]["lines"] == sql(catalog, "SELECT COUNT(*) FROM ocr_lines")[0][0] > 0
    assert stats["clusters"]["clusters"] == sql(catalog, "SELECT COUNT(*) FROM clusters WHERE cluster_id >= 0")[0][0] > 0
    assert stats["clusters"]["region_clusters"] + stats["clusters"]["text_clusters"] == stats["clusters"]["clusters"]
    assert stats["reviews"] == dict(sql(catalog, "SELECT status, COUNT(*) FROM reviews GROUP BY status"))
    assert catalog.read_bytes() == before


@pytest.mark.slow
def test_stats_text_is_aligned_and_counts_reviews(catalog, tmp_path):
    region = sql(catalog, "SELECT image_id, region_id FROM regions ORDER BY image_id, region_id LIMIT 1")[0]
    line = sql(catalog, "SELECT image_id, line_no FROM ocr_lines ORDER BY image_id, line_no LIMIT 1")[0]
    reviews = [Review(region[0], region[1], None, "relabeled", "citrus"), Review(line[0], None, line[1], "accepted", None)]
    assert record_reviews(reviews, catalog, tmp_path / "reviews.sqlite", source="test") == 2
    proc = shardlens("stats", str(catalog), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    counted = [l for l in lines if l.startswith("  ")]
    assert counted and len({len(l) for l in counted}) == 1  # numbers right-aligned in one column
    value = {l.rsplit(None, 1)[0].strip(): int(l.rsplit(None, 1)[1]) for l in counted}
    assert value["accepted"] == 1 and value["relabeled"] == 1
    assert value["lines"] == sql(catalog, "SELECT COUNT(*) FROM ocr_lines")[0][0]
    top_class, top_count = sql(catalog, "SELECT caption, COUNT(*) FROM regions GROUP BY caption ORDER BY 2 DESC, 1 LIMIT 1")[0]
    assert value[top_class] == top_count


# -------------------------------------------------------------------------------------- show


@pytest.mark.slow
def test_show_matches_the_catalog(catalog, tmp_path):
    image_id, path = sql(
        catalog,
        """SELECT p.image_id, p.path FROM paths p
           WHERE EXISTS (SELECT 1 FROM regions r WHERE r.image_id = p.image_id)
             AND EXISTS (SELECT 1 FROM ocr_lines o WHERE o.image_id = p.image_id)
           ORDER BY p.path LIMIT 1""",
    )[0]
    region_id = sql(catalog, "SELECT MIN(region_id) FROM regions WHERE image_id = ?", image_id)[0][0]
    record_reviews([Review(image_id, region_id, None, "relabeled", "citrus")], catalog, tmp_path / "reviews.sqlite", source="test")

    proc = shardlens("show", path, "--db", str(catalog), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    score, decision = sql(catalog, "SELECT score, decision FROM gate WHERE image_id = ?", image_id)[0]
    assert shown["image_id"] == image_id and shown["gate"]["score"] == score and shown["gate"]["decision"] == decision
    lines = sql(catalog, "SELECT line_no, text, confidence, bbox FROM ocr_lines WHERE image_id = ? ORDER BY line_no", image_id)
    assert [(l["line_no"], l["text"], l["confidence"], l["bbox"]) for l in shown["lines"]] == [
        (n, text, conf, json.loads(bbox)) for n, text, conf, bbox in lines
    ]
    regions = sql(catalog, "SELECT region_id, caption, labels FROM regions WHERE image_id = ? ORDER BY region_id", image_id)
    assert [r["region_id"] for r in shown["regions"]] == [r[0] for r in regions]
    for got, (rid, caption, labels) in zip(shown["regions"], regions):
        assert got["machine_label"] == caption
        assert got["candidates"] == [{"label": c["label"], "score": c["score"], "source": c["source"]} for c in json.loads(labels)]
        if rid == region_id:
            assert (got["review_status"], got["final_label"]) == ("relabeled", "citrus")
        else:
            assert got["review_status"] is None and got["final_label"] == caption

    text = shardlens("show", path, "--db", str(catalog), cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == path
    assert f"gate: {decision}" in text.stdout and f"score {score:.3f}" in text.stdout
    assert f"OCR lines: {len(lines)}" in text.stdout and f"regions: {len(regions)}" in text.stdout
    assert "relabeled as citrus" in text.stdout
    for _, line_text, _, _ in lines:
        assert f'"{line_text}"' in text.stdout


@pytest.mark.slow
def test_show_of_an_unknown_path_names_it_and_suggests(catalog, tmp_path):
    path = sql(catalog, "SELECT path FROM paths WHERE path LIKE '%/%' ORDER BY path LIMIT 1")[0][0]
    name = Path(path).name
    proc = shardlens("show", name, "--db", str(catalog), cwd=tmp_path)  # the file name without its folder
    one_line_error(proc, repr(name), "not in the catalog", repr(path))
    one_line_error(shardlens("show", "no/such/file.png", "--db", str(catalog), cwd=tmp_path), "'no/such/file.png'")
