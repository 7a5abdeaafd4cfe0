"""The README's demo run, for real: the demo rule generates the images, the workflow catalogs them,
and OCR reads the clean text images with a character error rate of at most 0.05. The run is the
session's shared ``demo_run`` (conftest)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from shardlens.evaluation import cer

pytestmark = pytest.mark.slow


def test_demo_catalog_holds_every_image_with_a_gate_decision(demo_run):
    truth = json.loads((demo_run / "resources" / "demo" / "ground_truth.json").read_text())
    db = sqlite3.connect(demo_run / "results" / "annotations.sqlite")
    paths = {row[0] for row in db.execute("SELECT path FROM paths WHERE status = 'ok'")}
    assert paths == set(truth)
    missing_gate = db.execute("SELECT COUNT(*) FROM images i LEFT JOIN gate g ON g.image_id = i.image_id WHERE g.image_id IS NULL").fetchone()[0]
    assert missing_gate == 0


def test_clean_text_images_are_read_exactly(demo_run):
    truth = json.loads((demo_run / "resources" / "demo" / "ground_truth.json").read_text())
    db = sqlite3.connect(demo_run / "results" / "annotations.sqlite")
    clean = {path: spec for path, spec in truth.items() if spec["clean"] and spec["lines"]}
    assert len(clean) >= 5
    rates = {}
    for path, spec in clean.items():
        lines = [
            row[0]
            for row in db.execute(
                "SELECT o.text FROM ocr_lines o JOIN paths p ON p.image_id = o.image_id WHERE p.path = ? ORDER BY o.line_no",
                (path,),
            )
        ]
        rates[path] = cer(" ".join(lines), " ".join(spec["lines"]))
    assert max(rates.values()) <= 0.05, rates


def test_text_free_images_are_mostly_skipped_and_text_images_never(demo_run):
    truth = json.loads((demo_run / "resources" / "demo" / "ground_truth.json").read_text())
    db = sqlite3.connect(demo_run / "results" / "annotations.sqlite")
    decisions = dict(db.execute("SELECT p.path, g.decision FROM paths p JOIN gate g ON g.image_id = p.image_id").fetchall())
    generated_text = [p for p, s in truth.items() if s["category"] == "text"]
    assert all(decisions[p] == "ocr" for p in generated_text), {p: decisions[p] for p in generated_text}
    notext = [p for p, s in truth.items() if s["category"] == "notext"]
    skipped = sum(decisions[p] == "skip" for p in notext)
    assert skipped >= 0.7 * len(notext), {p: decisions[p] for p in notext}


def test_every_job_log_ends_with_a_summary_line(demo_run):
    logs = sorted((demo_run / "logs").glob("*/*.log")) + sorted((demo_run / "logs").glob("*.log"))
    stages = {p.parent.name for p in logs} | {p.stem for p in logs}
    assert {"ingest", "gate", "ocr", "detect", "embed", "cluster", "manifest", "catalog", "export", "demo_images", "ingest_report"} <= stages
    for log in logs:
        last = log.read_text().strip().splitlines()[-1]
        summary = json.loads(last)
        assert {"shard", "stage", "images", "ok", "errors", "skipped", "seconds"} <= set(summary), log


def test_demo_clusters_group_objects_and_keep_signs_apart(demo_run):
    db = sqlite3.connect(demo_run / "results" / "annotations.sqlite")
    person = db.execute(
        "SELECT DISTINCT a.cluster_id FROM item_annotations a JOIN images i USING (image_id) WHERE a.item = 'region' AND a.text = 'person'"
    ).fetchall()
    person_images = db.execute("SELECT COUNT(DISTINCT image_id) FROM regions WHERE caption = 'person'").fetchone()[0]
    assert person_images >= 3 and len(person) == 1 and person[0][0] >= 0
    cat_cluster = db.execute("SELECT cluster_id FROM cluster_members WHERE item = 'region' AND text = 'cat'").fetchone()
    signs = db.execute(
        "SELECT o.text, COALESCE(m.cluster_id, -1) FROM ocr_lines o JOIN paths p ON p.image_id = o.image_id "
        "LEFT JOIN cluster_members m ON m.item = 'text' AND m.text = o.text WHERE p.path LIKE 'text/signs/%'"
    ).fetchall()
    assert signs
    assert cat_cluster is not None
    assert all(cluster != cat_cluster[0] or cluster < 0 for _, cluster in signs)


def test_demo_exports_exist_with_rows_for_regions_and_text(demo_run):
    import csv

    with (demo_run / "results" / "annotations.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["item"] for r in rows} >= {"region", "text"}
    tasks = json.loads((demo_run / "results" / "labelstudio_tasks.json").read_text())
    assert len(tasks) == 42
    rect = next(r for t in tasks for p in t["predictions"] for r in p["result"] if r["type"] == "rectanglelabels")
    assert 0 <= rect["value"]["x"] <= 100 and 0 < rect["value"]["width"] <= 100 and "score" in rect


def test_default_detector_finds_what_a_person_would_call_right(demo_run):
    db = sqlite3.connect(demo_run / "results" / "annotations.sqlite")
    expected = {
        "photos/astronaut.png": "person",
        "photos/grace_hopper.jpg": "person",
        "photos/chelsea.jpg": "cat",
        "photos/coffee.jpg": "cup",
        "photos/motorcycle_left.jpg": "motorcycle",
    }
    for path, label in expected.items():
        found = db.execute(
            "SELECT MAX(l.score) FROM region_labels l JOIN paths p ON p.image_id = l.image_id WHERE p.path = ? AND l.label = ?",
            (path, label),
        ).fetchone()[0]
        assert found is not None, f"no {label!r} region on {path}"


def test_machine_labels_keep_the_detectors_meaning(demo_run):
    """Clusters group, they never rename: a region's machine label is its own top candidate, an
    OCR line's its own text, and the final label differs only where a person reviewed it."""
    db = sqlite3.connect(demo_run / "results" / "annotations.sqlite")
    candidates: dict[tuple[str, int], list[str]] = {}
    for image_id, region_id, label in db.execute("SELECT image_id, region_id, label FROM region_labels ORDER BY image_id, region_id, rank"):
        candidates.setdefault((image_id, region_id), []).append(label)
    regions = db.execute(
        "SELECT image_id, region_id, machine_label, final_label, review_status, cluster_id FROM final_annotations WHERE item = 'region'"
    ).fetchall()
    assert len(regions) == len(candidates) > 5
    for image_id, region_id, machine, final, review, _ in regions:
        assert machine == candidates[(image_id, region_id)][0]
        assert review is not None or final == machine
    lines = db.execute("SELECT text, machine_label FROM final_annotations WHERE item = 'text'").fetchall()
    assert lines and all(text == machine for text, machine in lines)
    mixed = db.execute("SELECT cluster_id FROM cluster_members WHERE cluster_id >= 0 GROUP BY cluster_id HAVING COUNT(DISTINCT item) > 1").fetchall()
    assert mixed == []  # object labels and OCR texts are clustered apart
