"""The README's demo run, for real: the demo rule generates the images, the workflow catalogs them,
and OCR reads the clean text images with a character error rate of at most 0.05."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from conftest import REPO, snakemake
from shardlens.evaluation import cer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo_run")
    shutil.copytree(REPO / "config", workdir / "config")  # the repository's default config
    snakemake(workdir, "--cores", "2")
    return workdir


def test_demo_catalog_holds_every_image_with_a_gate_decision(demo_run):
    truth = json.loads((demo_run / "resources" / "demo" / "ground_truth.json").read_text())
    db = sqlite3.connect(demo_run / "results" / "annotations.sqlite")
    paths = {row[0] for row in db.execute("SELECT path FROM paths WHERE status = 'ok'")}
    assert paths == set(truth)
    missing_gate = db.execute(
        "SELECT COUNT(*) FROM images i LEFT JOIN gate g ON g.image_id = i.image_id WHERE g.image_id IS NULL"
    ).fetchone()[0]
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
    decisions = dict(
        db.execute("SELECT p.path, g.decision FROM paths p JOIN gate g ON g.image_id = p.image_id").fetchall()
    )
    generated_text = [p for p, s in truth.items() if s["category"] == "text"]
    assert all(decisions[p] == "ocr" for p in generated_text), {p: decisions[p] for p in generated_text}
    notext = [p for p, s in truth.items() if s["category"] == "notext"]
    skipped = sum(decisions[p] == "skip" for p in notext)
    assert skipped >= 0.7 * len(notext), {p: decisions[p] for p in notext}


def test_every_job_log_ends_with_a_summary_line(demo_run):
    logs = sorted((demo_run / "logs").glob("*/*.log"))
    assert logs
    for log in logs:
        last = log.read_text().strip().splitlines()[-1]
        summary = json.loads(last)
        assert {"shard", "stage", "images", "ok", "errors", "skipped", "seconds"} <= set(summary), log
