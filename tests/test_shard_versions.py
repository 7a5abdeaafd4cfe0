"""The catalog's change tracking (shardlens/shard_versions.py) marks exactly the shards whose
exported rows a write changed, and the export rewrites those Parquet partitions only; the
whole-file formats are the ones export.formats names, and the export rule declares exactly
those files."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from shardlens.catalog import import_cache
from shardlens.exports import export_catalog, parquet_dataset
from shardlens.review_store import Review
from shardlens.reviews import record_reviews

from conftest import copy_tree, snakemake

QUIET = {"log": lambda message: None}


@pytest.fixture()
def run(small_catalog, tmp_path) -> Path:
    return shutil.copytree(small_catalog.parents[1], tmp_path / "run", symlinks=True)


def versions(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT shard, version FROM shard_versions"))
    finally:
        conn.close()


def bumped(before: dict, after: dict) -> list[str]:
    return sorted(shard for shard in after if after[shard] != before.get(shard))


def first_path_shard(conn: sqlite3.Connection, image_id: str) -> str:
    return conn.execute("SELECT shard FROM paths WHERE path = (SELECT MIN(path) FROM paths WHERE image_id = ?)", (image_id,)).fetchone()[0]


def test_a_review_marks_the_shard_of_its_images_first_path_only(run):
    db = run / "results" / "annotations.sqlite"
    conn = sqlite3.connect(db)
    (image_id,) = conn.execute("SELECT image_id FROM regions ORDER BY image_id LIMIT 1").fetchone()
    shard = first_path_shard(conn, image_id)
    conn.close()
    before = versions(db)
    assert sorted(before) == ["0000", "0001"]
    record_reviews([Review(image_id, 0, None, "relabeled", "something else", "ana")], db, run / "reviews" / "reviews.sqlite", "test")
    assert bumped(before, versions(db)) == [shard]


def test_a_member_moving_cluster_marks_the_shards_of_its_text_and_a_count_or_outlier_score_marks_none(run):
    db = run / "results" / "annotations.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    (text,) = conn.execute("SELECT text FROM ocr_lines ORDER BY text LIMIT 1").fetchone()
    holders = sorted({first_path_shard(conn, i) for (i,) in conn.execute("SELECT image_id FROM ocr_lines WHERE text = ?", (text,))})
    before = versions(db)
    conn.execute("INSERT INTO cluster_members VALUES ('text', ?, 3, '[\"ocr\"]', 1, 0.9, 'fitted', 0.2)", (text,))
    assert bumped(before, versions(db)) == holders != []
    before = versions(db)
    conn.execute("UPDATE cluster_members SET count = count + 5 WHERE item = 'text' AND text = ?", (text,))
    assert versions(db) == before  # how often a text occurs is in no exported row
    conn.execute("UPDATE cluster_members SET outlier_score = 0.7 WHERE item = 'text' AND text = ?", (text,))
    assert versions(db) == before  # nor is its outlier score (a risk part shown in item_risk, which no export holds)
    conn.execute("UPDATE cluster_members SET cluster_id = 4 WHERE item = 'text' AND text = ?", (text,))
    assert bumped(before, versions(db)) == holders
    before = versions(db)
    conn.execute("INSERT INTO cluster_members VALUES ('region', 'no such class', 5, '[]', 1, 0.9, 'fitted', 0.0)")
    assert versions(db) == before  # no region of that class: no exported row changed
    conn.close()


def test_a_copy_whose_path_sorts_first_moves_the_rows_and_both_partitions_are_rewritten(run):
    """An image's rows live in the partition of its first path: a copy added in another shard
    under a smaller path moves them, and the shard that held them must be rewritten too."""
    db, out = run / "results" / "annotations.sqlite", run / "results"
    export_catalog(db, out, formats=[])
    conn = sqlite3.connect(db, isolation_level=None)
    image_id, path = conn.execute(
        "SELECT p.image_id, p.path FROM paths p JOIN regions r USING (image_id) WHERE p.shard = '0001' ORDER BY p.path LIMIT 1"
    ).fetchone()
    before = versions(db)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(paths)")]
    row = dict(zip(columns, conn.execute("SELECT * FROM paths WHERE path = ?", (path,)).fetchone()))
    row.update(path="0 first copy/" + path, shard="0000")
    conn.execute(f"INSERT INTO paths ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", [row[c] for c in columns])
    conn.close()
    assert bumped(before, versions(db)) == ["0000", "0001"]
    result = export_catalog(db, out, formats=[])
    assert result.dataset.written == ["0000", "0001"]
    rows = parquet_dataset(result.paths["parquet"]).to_table().to_pylist()
    mine = [r for r in rows if r["image_id"] == image_id]
    assert mine and {(r["shard"], r["path"]) for r in mine} == {("0000", "0 first copy/" + path)}


def test_a_shard_loaded_again_with_the_same_rows_marks_nothing(run):
    db = run / "results" / "annotations.sqlite"
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM shard_files WHERE shard = '0000'")  # the importer now reads 0000 again
    conn.commit()
    conn.close()
    before = versions(db)
    stats = import_cache(run / "cache", db, **QUIET)
    assert stats["loaded"] == ["0000"]
    after = versions(db)
    assert after["0001"] == before["0001"] and after["0000"] == before["0000"] + 1  # the load itself, once


def test_a_full_rebuild_starts_a_new_epoch_and_the_export_rewrites_every_partition(run):
    db, out = run / "results" / "annotations.sqlite", run / "results"
    first = export_catalog(db, out, formats=[])
    again = export_catalog(db, out, formats=[])
    assert (first.dataset.written, again.dataset.written, again.dataset.unchanged) == (["0000", "0001"], [], ["0000", "0001"])
    epoch = json.loads((out / "annotations.parquet" / "_partitions.json").read_text())["epoch"]
    assert import_cache(run / "cache", db, full=True, **QUIET)["mode"] == "full"
    rebuilt = export_catalog(db, out, formats=[])
    assert rebuilt.dataset.written == ["0000", "0001"]
    assert json.loads((out / "annotations.parquet" / "_partitions.json").read_text())["epoch"] != epoch


def test_parquet_alone_writes_no_whole_file_and_the_same_rows(run, tmp_path):
    db = run / "results" / "annotations.sqlite"
    alone = export_catalog(db, tmp_path / "alone", formats=[])
    assert sorted(alone.paths) == ["parquet", "parquet_manifest"]
    assert sorted(p.name for p in (tmp_path / "alone").iterdir()) == ["annotations.parquet", "annotations.parquet.json"]
    every = export_catalog(db, tmp_path / "every")
    assert sorted(every.paths) == ["coco", "coco_text", "csv", "json", "labelstudio", "labelstudio_config", "parquet", "parquet_manifest"]
    assert alone.rows == every.rows == len(json.loads(every.paths["json"].read_text(encoding="utf-8"))) > 0
    assert parquet_dataset(alone.paths["parquet"]).to_table().to_pylist() == parquet_dataset(every.paths["parquet"]).to_table().to_pylist()
    some = export_catalog(db, tmp_path / "some", formats=["coco_text", "csv"])
    assert sorted(some.paths) == ["coco_text", "csv", "parquet", "parquet_manifest"]
    with pytest.raises(ValueError, match=r"export.formats: unknown format\(s\) 'xml'; known: csv, json, coco, coco_text, labelstudio"):
        export_catalog(db, tmp_path / "bad", formats=["csv", "xml"])


@pytest.mark.slow
def test_the_export_rule_declares_the_formats_of_the_config(demo_run, tmp_path):
    workdir = copy_tree(demo_run, tmp_path / "run")
    results = workdir / "results"
    for name in ("annotations.csv", "annotations.json", "annotations.parquet.json"):
        (results / name).unlink()
    # Parquet alone: the workflow is complete without the CSV, and the export makes no CSV
    snakemake(workdir, "--cores", "2", "--config", "export={formats: []}")
    assert (results / "annotations.parquet.json").is_file()
    assert not (results / "annotations.csv").exists() and not (results / "annotations.json").exists()
    # the CSV named again: the export runs again (its params changed) and writes it
    snakemake(workdir, "--cores", "2", "--config", "export={formats: [csv]}")
    assert (results / "annotations.csv").is_file() and not (results / "annotations.json").exists()
    summary = [json.loads(line) for line in (workdir / "logs" / "export.log").read_text().splitlines() if line.startswith("{")][-1]
    assert summary["extra"]["parquet_partitions_written"] == 0  # nothing changed in the catalog
