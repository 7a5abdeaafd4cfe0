"""Real Snakemake runs on a tiny image set: planning, a full run, and what a re-run redoes."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import REPO, planned_jobs, snakemake, text_image, write_config

pytestmark = pytest.mark.slow

PER_SHARD = ("shard_listing", "ingest", "gate", "ocr", "detect", "regions", "embed", "shard_jobs")
AGGREGATE = {"cluster": 1, "manifest": 1, "catalog": 1, "export": 1, "ingest_report": 1, "report_figures": 1, "all": 1}


def shards_of(workdir: Path) -> list[str]:
    return sorted(p.stem for p in (workdir / "cache" / "shards").glob("*.tsv"))


def test_dry_run_plans_without_running(tmp_path, tiny_images):
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 3})
    jobs = planned_jobs(workdir)
    n = jobs["shard_listing"]
    assert n >= 2
    assert jobs == {**{stage: n for stage in PER_SHARD}, "listing_skipped": 1, **AGGREGATE}
    # a plan writes nothing: no shard listing, no stage output, no catalog (docs/adr/0002)
    assert not (workdir / "cache").exists()
    assert not (workdir / "results").exists()


def test_the_test_config_runs_the_whole_workflow(tmp_path):
    """.test/ is run the standard way (`snakemake --directory .test --cores 2`): here a copy of its
    config beside a link to tests/, so that its images folder (../tests/quality/images) resolves as
    in the repository. Every listed image is cataloged, and a second plan has nothing to do."""
    workdir = tmp_path / ".test"
    shutil.copytree(REPO / ".test" / "config", workdir / "config")
    (tmp_path / "tests").symlink_to(REPO / "tests")
    snakemake(workdir, "--cores", "2")
    listed = [line for line in (workdir / "config" / "images.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert len(listed) == 6
    db = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    assert dict(db.execute("SELECT path, status FROM paths").fetchall()) == dict.fromkeys(listed, "ok")
    assert db.execute("SELECT COUNT(*) FROM ocr_lines").fetchone()[0] >= 1
    assert {row[0] for row in db.execute("SELECT caption FROM regions")} >= {"dog", "cat"}
    db.close()
    assert shards_of(workdir) == ["0000", "0001"]
    assert (workdir / "results" / "annotations.parquet.json").is_file()
    assert planned_jobs(workdir) == {}


def test_rerun_redoes_only_what_changed(tmp_path, tiny_images):
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 3})
    snakemake(workdir, "--cores", "2")
    shards = shards_of(workdir)

    db = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    assert db.execute("SELECT COUNT(*) FROM paths").fetchone()[0] == 7
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 6  # cat_copy is the same file
    assert db.execute("SELECT n_paths FROM images WHERE path = 'cat.jpg'").fetchone()[0] == 2
    assert db.execute("SELECT error FROM paths WHERE path = 'broken.jpg'").fetchone()[0] == "not_an_image"
    texts = {row[0] for row in db.execute("SELECT text FROM ocr_lines")}
    assert {"OPEN 24 HOURS", "Main Street", "Parking"} <= texts
    db.close()
    manifest = json.loads((workdir / "cache" / "manifest.json").read_text())
    assert sorted(manifest["shards"]) == shards

    # a no-op re-run does nothing
    assert planned_jobs(workdir) == {}

    # editing one image re-runs only its shard's stages plus the aggregates; the other shards'
    # listings keep their mtimes
    listings = {p.name: p.stat().st_mtime_ns for p in (workdir / "cache" / "shards").glob("*.tsv")}
    text_image(["CLOSED ON SUNDAY"]).save(tiny_images / "open.png")
    jobs = planned_jobs(workdir)
    assert jobs == {**{stage: 1 for stage in PER_SHARD}, **AGGREGATE}
    snakemake(workdir, "--cores", "2")
    changed = [n for n, mtime in listings.items() if (workdir / "cache" / "shards" / n).stat().st_mtime_ns != mtime]
    assert len(changed) == 1
    db = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    texts = {row[0] for row in db.execute("SELECT text FROM ocr_lines")}
    assert "CLOSED ON SUNDAY" in texts and "OPEN 24 HOURS" not in texts
    db.close()

    # an OCR threshold change re-runs OCR for every shard, never ingest or the gate
    write_config(workdir, images=str(tiny_images), shards={"count": 3}, ocr={"text_score": 0.4})
    jobs = planned_jobs(workdir)
    assert jobs == {"ocr": len(shards), "embed": len(shards), "shard_jobs": len(shards), **AGGREGATE}

    # adding an image touches one shard only
    write_config(workdir, images=str(tiny_images), shards={"count": 3})
    text_image(["NEW ARRIVALS"]).save(tiny_images / "sub" / "new.png")
    jobs = planned_jobs(workdir)
    assert jobs == {**{stage: 1 for stage in PER_SHARD}, **AGGREGATE}


def test_config_typo_names_the_key(tmp_path, tiny_images):
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), gate={"score_treshold": 0.5})
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    assert "score_treshold" in proc.stdout + proc.stderr

    write_config(workdir, images=str(tiny_images), shards={"count": "four"})
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    assert "four" in proc.stdout + proc.stderr


def test_missing_images_folder_is_a_clear_error(tmp_path):
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tmp_path / "nowhere"))
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    assert "nowhere" in proc.stdout + proc.stderr and "is not a folder" in proc.stdout + proc.stderr


def test_swapping_the_detector_reruns_only_detect_and_dependants(tmp_path, tiny_images):
    from tiny_hf_models import build_owlv2

    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 2})
    snakemake(workdir, "--cores", "2")
    n = len(shards_of(workdir))
    model = build_owlv2(tmp_path / "owl")
    detect = {"backend": "owlv2", "model": str(model), "vocabulary": ["cat", "sign"], "score_threshold": 0.0, "max_detections": 3}
    write_config(workdir, images=str(tiny_images), shards={"count": 2}, detect=detect)
    assert planned_jobs(workdir) == {"detect": n, "regions": n, "embed": n, "shard_jobs": n, **AGGREGATE}
    snakemake(workdir, "--cores", "2")
    db = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    versions = {row[0].split(":")[0] for row in db.execute("SELECT DISTINCT detector_version FROM regions")}
    assert versions == {"owlv2"}
    labels = {row[0] for row in db.execute("SELECT DISTINCT label FROM region_labels")}
    assert labels <= {"cat", "sign"} and labels
    manifest = json.loads((workdir / "cache" / "manifest.json").read_text())
    assert manifest["models"]["detector"]["backend"] == "owlv2"
    assert planned_jobs(workdir) == {}


def test_switching_the_ocr_engine_reruns_only_ocr_and_dependants(tmp_path, tiny_images):
    """Both OCR backends in one workflow: rapidocr in the main environment, then paddleocr in its
    own (the OCR job talks to a worker in the paddle venv)."""
    from test_paddle_ocr import paddle_python

    paddle_python()  # skips with the reason when the paddle venv is absent (CI creates it)
    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 2})
    snakemake(workdir, "--cores", "2")
    n = len(shards_of(workdir))
    write_config(workdir, images=str(tiny_images), shards={"count": 2}, ocr={"engine": "paddleocr"})
    assert planned_jobs(workdir) == {"ocr": n, "embed": n, "shard_jobs": n, **AGGREGATE}
    snakemake(workdir, "--cores", "2")
    db = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    sources = {row[0].split(":")[0].split("-")[0] for row in db.execute("SELECT DISTINCT source FROM ocr_lines")}
    assert sources == {"paddleocr"}
    texts = {row[0] for row in db.execute("SELECT text FROM ocr_lines")}
    assert {"OPEN 24 HOURS", "Main Street"} <= texts, texts
    manifest = json.loads((workdir / "cache" / "manifest.json").read_text())
    assert manifest["models"]["ocr"]["backend"] == "paddleocr"
