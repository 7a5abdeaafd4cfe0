"""Typed exports: every table export names each row's image size and images root; Parquet keeps the
types (review columns are strings, candidates a list of structs); a CSV read with the README's
call takes review strings in pandas 3 and goes back through the review import. The exports are
streamed (the JSON writer lays out a document as json.dumps does); the Parquet dataset holds the
CSV's rows, one partition per shard, and a re-run rewrites only the partitions whose rows changed,
each atomically, also when Snakemake runs the export again."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from shardlens.catalog import build_catalog
from shardlens.exports import COLUMNS, PARTITION_FILE, REVIEW_COLUMNS, STATE_FILE, export_all, export_catalog, parquet_dataset, parquet_schema
from shardlens.json_stream import ArrayWriter, ObjectWriter
from shardlens.review_store import Review
from shardlens.reviews import import_review_csv, record_reviews
from shardlens.spreadsheet import csv_cell

from conftest import copy_tree, snakemake


@pytest.fixture()
def run(small_catalog, tmp_path) -> Path:
    """A copy of the small run's folder, for tests that record reviews."""
    return shutil.copytree(small_catalog.parents[1], tmp_path / "run", symlinks=True)


def catalog_sizes(db: Path) -> dict[str, tuple[int, int]]:
    conn = sqlite3.connect(db)
    sizes = {image_id: (w, h) for image_id, w, h in conn.execute("SELECT image_id, width, height FROM images WHERE status = 'ok'")}
    conn.close()
    return sizes


def test_csv_json_and_parquet_carry_width_height_and_the_images_root(small_catalog, tmp_path):
    paths = export_all(small_catalog, tmp_path / "out")
    root = (small_catalog.parents[1] / "images").resolve()
    sizes = catalog_sizes(small_catalog)
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    json_rows = json.loads(paths["json"].read_text(encoding="utf-8"))
    parquet_rows = parquet_dataset(paths["parquet"]).to_table().to_pylist()
    assert len(csv_rows) == len(json_rows) == len(parquet_rows) > 0
    for rows, kind in ((csv_rows, "csv"), (json_rows, "json"), (parquet_rows, "parquet")):
        assert {r["image_id"] for r in rows} == set(sizes), kind  # every decoded image, also those with nothing found
        for row in rows:
            assert (int(row["width"]), int(row["height"])) == sizes[row["image_id"]], (kind, row)
            assert row["images_root"] == root.as_posix(), kind
            assert (Path(row["images_root"]) / row["path"]).is_file(), kind
    # boxes normalise with the row's own size, without the catalog
    for row in parquet_rows:
        if row["bbox"]:
            x0, y0, x1, y1 = row["bbox"]
            assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"], row


def test_an_explicit_images_root_wins_and_an_unknown_one_is_empty(small_catalog, tmp_path):
    elsewhere = tmp_path / "photos"
    elsewhere.mkdir()
    paths = export_all(small_catalog, tmp_path / "a", images_root=elsewhere)
    assert {r["images_root"] for r in parquet_dataset(paths["parquet"]).to_table().to_pylist()} == {elsewhere.resolve().as_posix()}
    # a catalog away from its run folder, with a config whose images folder is not there: unknown
    lone = tmp_path / "lone" / "annotations.sqlite"
    lone.parent.mkdir()
    shutil.copy(small_catalog, lone)
    from shardlens.config import load_config

    paths = export_all(lone, tmp_path / "b", config=load_config(None, images=str(tmp_path / "missing")))
    assert {r["images_root"] for r in parquet_dataset(paths["parquet"]).to_table().to_pylist()} == {None}
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        assert {r["images_root"] for r in csv.DictReader(handle)} == {""}


def test_parquet_types_and_candidates(small_catalog, tmp_path):
    paths = export_all(small_catalog, tmp_path / "out")
    for part in paths["parquet"].glob(f"shard=*/{PARTITION_FILE}"):
        assert pq.read_schema(part).equals(parquet_schema()), part  # each file: exactly the export's schema
    table = parquet_dataset(paths["parquet"]).to_table()
    schema = table.schema
    for name in REVIEW_COLUMNS + ("path", "final_label", "images_root"):
        assert schema.field(name).type == pa.string(), name
    assert schema.field("width").type == pa.int64() and schema.field("height").type == pa.int64()
    candidate = pa.struct([("label", pa.string()), ("score", pa.float64()), ("source", pa.string())])
    assert schema.field("candidates").type == pa.list_(candidate)

    conn = sqlite3.connect(small_catalog)
    expected: dict[tuple[str, int], list[dict]] = {}
    for image_id, region_id, label, score, source in conn.execute(
        "SELECT image_id, region_id, label, score, source FROM region_labels "
        "WHERE shard = (SELECT MIN(shard) FROM region_labels l WHERE l.image_id = region_labels.image_id) "
        "ORDER BY image_id, region_id, rank"
    ):
        expected.setdefault((image_id, region_id), []).append({"label": label, "score": score, "source": source})
    conn.close()
    rows = table.to_pylist()
    regions = [r for r in rows if r["item"] == "region"]
    assert regions and any(len(r["candidates"]) > 1 for r in regions)
    for row in regions:
        assert row["candidates"] == expected[(row["image_id"], row["region_id"])]
        assert row["candidates"][0]["label"] == row["machine_label"]  # the machine label is its own top candidate
    assert all(r["candidates"] is None for r in rows if r["item"] != "region")
    # the JSON export carries the same candidates
    by_key = {(r["image_id"], r["region_id"]): r["candidates"] for r in json.loads(paths["json"].read_text()) if r["item"] == "region"}
    assert by_key == {(r["image_id"], r["region_id"]): r["candidates"] for r in regions}


def test_review_columns_take_strings_in_pandas(small_catalog, tmp_path):
    assert int(pd.__version__.split(".")[0]) >= 3
    paths = export_all(small_catalog, tmp_path / "out")
    # Parquet: strings, null when empty
    frame = pd.read_parquet(paths["parquet"])
    assert all(pd.api.types.is_string_dtype(frame[c]) for c in REVIEW_COLUMNS)
    frame.loc[frame.index[0], "review_status"] = "accepted"
    assert frame["review_status"].iloc[0] == "accepted" and frame["review_status"].isna().sum() == len(frame) - 1
    # JSON, as the README reads it
    frame = pd.read_json(paths["json"], dtype=False)
    frame.loc[frame.index[0], "review_status"] = "accepted"
    assert frame["review_status"].iloc[0] == "accepted"
    # CSV: without the documented call the empty review columns are float, which pandas 3 refuses
    # to set to text; with it they are text
    plain = pd.read_csv(paths["csv"])
    assert plain["review_status"].dtype == "float64"
    with pytest.raises(TypeError):
        plain.loc[plain.index[0], "review_status"] = "accepted"
    frame = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    frame.loc[frame.index[0], "review_status"] = "accepted"
    assert frame["review_status"].iloc[0] == "accepted" and set(frame["review_status"].iloc[1:]) == {""}


def test_a_sheet_edited_in_pandas_goes_back_through_the_review_import(run, tmp_path):
    db = run / "results" / "annotations.sqlite"
    paths = export_all(db, run / "results")
    sheet = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False)
    cat = sheet.index[(sheet["path"] == "photos/cat.jpg") & (sheet["item"] == "region") & (sheet["region_id"] == "0")][0]
    line = sheet.index[sheet["item"] == "text"][0]
    person = sheet.index[sheet["machine_label"] == "person"][0]
    sheet.loc[cat, ["review_status", "review_label", "reviewer"]] = ["relabeled", "tabby cat", "ana"]
    sheet.loc[line, "review_status"] = "accepted"
    sheet.loc[person, "review_status"] = "rejected"
    edited = tmp_path / "reviewed.csv"
    sheet.to_csv(edited, index=False)

    assert import_review_csv(edited, db, run / "reviews" / "reviews.sqlite") == 3
    again = export_all(db, tmp_path / "again")
    rows = pd.read_parquet(again["parquet"])
    by_key = {(r.image_id, r.item, r.region_id if r.item == "region" else r.line_no): r for r in rows.itertuples()}
    cat_row = by_key[(sheet.loc[cat, "image_id"], "region", 0.0)]
    assert (cat_row.final_label, cat_row.review_status, cat_row.reviewer) == ("tabby cat", "relabeled", "ana")
    line_row = by_key[(sheet.loc[line, "image_id"], "text", float(sheet.loc[line, "line_no"]))]
    assert (line_row.final_label, line_row.review_status) == (sheet.loc[line, "text"], "accepted")
    person_row = by_key[(sheet.loc[person, "image_id"], "region", float(sheet.loc[person, "region_id"]))]
    assert person_row.review_status == "rejected" and pd.isna(person_row.final_label)
    assert {cat_row.label_source, line_row.label_source, person_row.label_source} == {"review"}
    # every other row is as it was: the pandas round trip changed nothing else
    changed = ["final_label", "label_source", *REVIEW_COLUMNS]
    before = pd.read_csv(paths["csv"], dtype=str, keep_default_na=False).drop(columns=changed)
    after = pd.read_csv(again["csv"], dtype=str, keep_default_na=False).drop(columns=changed)
    pd.testing.assert_frame_equal(before, after)


# -- streamed JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 2, 999, 1000, 1001, 2500])
def test_streamed_json_is_byte_for_byte_what_json_dumps_writes(count, tmp_path):
    items = [
        {"n": n, "text": f"Ελληνικά \"{n}\"\nline\\two", "bbox": [n / 3, 0.1, 1e-7, 12345678.9] if n % 3 else None,
         "candidates": [] if n % 2 else [{"label": "cat", "score": 0.5421, "source": "detector"}], "empty": {}}
        for n in range(count)
    ]  # fmt: skip
    with (tmp_path / "array.json").open("w", encoding="utf-8") as handle:
        array = ArrayWriter(handle)
        array.extend(iter(items))
        array.close()
    assert (tmp_path / "array.json").read_text(encoding="utf-8") == json.dumps(items, ensure_ascii=False, indent=1)
    document = {"info": {"labels": "final", "nested": {"a": [1, 2]}}, "licenses": [], "images": items, "annotations": items[:7], "categories": []}
    with (tmp_path / "object.json").open("w", encoding="utf-8") as handle:
        writer = ObjectWriter(handle)
        writer.value("info", document["info"])
        writer.value("licenses", [])
        assert writer.array("images", iter(items)) == count
        writer.array("annotations", iter(items[:7]))
        writer.value("categories", [])
        writer.close()
    assert (tmp_path / "object.json").read_text(encoding="utf-8") == json.dumps(document, ensure_ascii=False, indent=1)


# -- the Parquet dataset -----------------------------------------------------------------------------


def as_csv_text(value) -> str:
    """A typed value (JSON, Parquet) as the CSV export writes it."""
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))  # bbox, as the catalog stores it
    return str(csv_cell(value))


def dataset_rows_equal_the_csv(paths: dict[str, Path], db: Path) -> list[dict]:
    """The dataset's rows, checked against the CSV export of the same run: the same rows, value for
    value; each in the partition of the shard that lists its path; the manifest lists them."""
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        sheet = sorted(tuple(row[c] for c in COLUMNS) for row in csv.DictReader(handle))
    rows = parquet_dataset(paths["parquet"]).to_table().to_pylist()
    assert sorted(tuple(as_csv_text(row[c]) for c in COLUMNS) for row in rows) == sheet
    conn = sqlite3.connect(db)
    shard_of = dict(conn.execute("SELECT path, shard FROM paths"))
    conn.close()
    assert all(row["shard"] == shard_of[row["path"]] for row in rows)
    manifest = json.loads(paths["parquet_manifest"].read_text(encoding="utf-8"))
    assert manifest["rows"] == len(sheet) and manifest["partitioning"] == {"flavor": "hive", "field": "shard", "type": "string"}
    assert [(p["shard"], p["file"]) for p in manifest["partitions"]] == [
        (shard, f"annotations.parquet/shard={shard}/{PARTITION_FILE}") for shard in sorted({row["shard"] for row in rows})
    ]
    return rows


def partitions(dataset: Path) -> dict[str, tuple[int, int, str]]:
    """shard -> (inode, mtime_ns, sha256) of each partition file."""
    found = {}
    for part in sorted(dataset.glob(f"shard=*/{PARTITION_FILE}")):
        stat = part.stat()
        found[part.parent.name.removeprefix("shard=")] = (stat.st_ino, stat.st_mtime_ns, hashlib.sha256(part.read_bytes()).hexdigest())
    return found


def files_in(dataset: Path) -> list[str]:
    return sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*") if p.is_file())


def test_the_parquet_dataset_holds_the_csv_rows_one_partition_per_shard(small_catalog, tmp_path):
    paths = export_all(small_catalog, tmp_path / "out")
    dataset = paths["parquet"]
    assert dataset == tmp_path / "out" / "annotations.parquet" and dataset.is_dir()
    assert paths["parquet_manifest"] == tmp_path / "out" / "annotations.parquet.json"
    assert files_in(dataset) == [STATE_FILE, f"shard=0000/{PARTITION_FILE}", f"shard=0001/{PARTITION_FILE}"]
    for part in dataset.glob(f"shard=*/{PARTITION_FILE}"):
        assert pq.read_schema(part).equals(parquet_schema())
    rows = dataset_rows_equal_the_csv(paths, small_catalog)
    # the copy of cat.jpg in shard 0000 shares the image's first path, photos/cat.jpg (shard 0001)
    assert {(r["path"], r["shard"]) for r in rows if r["path"].endswith("cat.jpg")} == {("photos/cat.jpg", "0001")}
    # what any Hive-aware reader does: pyarrow's plain call (shard then reads as an integer), pandas
    plain = ds.dataset(dataset, format="parquet", partitioning="hive").to_table()
    assert plain.num_rows == len(rows) and sorted(set(plain.column("shard").to_pylist())) == [0, 1]
    assert len(pd.read_parquet(dataset)) == len(rows)
    assert len(parquet_dataset(dataset).to_table(filter=ds.field("shard") == "0000")) == sum(r["shard"] == "0000" for r in rows)


def reload_catalog(run: Path, shards: list[str]) -> dict:
    """The manifest of ``shards`` written again and the catalog updated in place, as the workflow's
    manifest and catalog rules do after a shard changed."""
    from shardlens.config import load_config
    from shardlens.manifest import build_manifest, write_manifest
    from shardlens.models.registry import models_for_config

    from small_catalog import STAGES

    config = load_config(run / "config" / "config.yaml")
    write_manifest(run / "cache" / "manifest.json", build_manifest(run / "cache", shards, models_for_config(config), stages=STAGES))
    return build_catalog(run / "cache", run / "results" / "annotations.sqlite", log=lambda message: None)


def image_id_of(db: Path, path: str) -> str:
    conn = sqlite3.connect(db)
    (image_id,) = conn.execute("SELECT image_id FROM paths WHERE path = ?", (path,)).fetchone()
    conn.close()
    return image_id


def test_a_rerun_rewrites_only_the_partitions_whose_rows_changed(run):
    from shardlens.records import read_jsonl, write_jsonl

    db, out = run / "results" / "annotations.sqlite", run / "results"
    dataset = out / "annotations.parquet"
    export_all(db, out)
    first = partitions(dataset)
    assert sorted(first) == ["0000", "0001"]

    again = export_catalog(db, out)  # nothing changed: nothing written
    assert (again.dataset.written, again.dataset.unchanged, again.dataset.removed) == ([], ["0000", "0001"], [])
    assert partitions(dataset) == first

    # the box on coffee #1.jpg (shard 0000) changes; the catalog loads that shard only
    coffee = image_id_of(db, "photos/coffee #1.jpg")
    regions = [{**r, "score": 0.1234} if r["image_id"] == coffee else r for r in read_jsonl(run / "cache" / "regions" / "0000.jsonl", "region")]
    write_jsonl(run / "cache" / "regions" / "0000.jsonl", "region", regions)
    assert reload_catalog(run, ["0000", "0001"])["loaded"] == ["0000"]
    result = export_catalog(db, out)
    assert (result.dataset.written, result.dataset.unchanged) == (["0000"], ["0001"])
    second = partitions(dataset)
    assert second["0001"] == first["0001"]  # untouched: same file, same time, same bytes
    assert second["0000"][2] != first["0000"][2]
    rows = dataset_rows_equal_the_csv(result.paths, db)
    assert {r["score"] for r in rows if r["image_id"] == coffee and r["item"] == "region"} == {0.1234}

    # a review changes the rows of its image: the partition of the shard listing its path
    astronaut = image_id_of(db, "photos/astronaut.png")
    record_reviews([Review(astronaut, 0, None, "relabeled", "spacewalker", "ana")], db, run / "reviews" / "reviews.sqlite", "test")
    result = export_catalog(db, out)
    assert (result.dataset.written, result.dataset.unchanged) == (["0001"], ["0000"])
    third = partitions(dataset)
    assert third["0000"] == second["0000"] and third["0001"][2] != second["0001"][2]
    rows = dataset_rows_equal_the_csv(result.paths, db)
    assert [r["final_label"] for r in rows if r["image_id"] == astronaut and r["region_id"] == 0] == ["spacewalker"]

    # shard 0000 leaves the plan: its partition is deleted; 0001 loses the rows of the cat's copy
    assert reload_catalog(run, ["0001"])["removed"] == ["0000"]
    result = export_catalog(db, out)
    assert (result.dataset.written, result.dataset.removed) == (["0001"], ["0000"])
    assert files_in(dataset) == [STATE_FILE, f"shard=0001/{PARTITION_FILE}"]
    assert json.loads((dataset / STATE_FILE).read_text())["partitions"].keys() == {"0001"}
    dataset_rows_equal_the_csv(result.paths, db)


def test_a_failed_write_keeps_the_last_partition_and_a_killed_one_is_redone(run):
    db, out = run / "results" / "annotations.sqlite", run / "results"
    dataset = out / "annotations.parquet"
    export_all(db, out)
    first = partitions(dataset)
    state = (dataset / STATE_FILE).read_bytes()

    # a row of shard 0001 that Parquet refuses (a width that is not a number): the error comes
    # out; the partition is the previous one, whole; no temporary file stays; the state is as it was
    conn = sqlite3.connect(db)
    conn.execute("UPDATE paths SET width = 'wide' WHERE path = 'photos/astronaut.png'")
    conn.commit()
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        export_all(db, out)
    assert partitions(dataset) == first
    assert files_in(dataset) == [STATE_FILE, f"shard=0000/{PARTITION_FILE}", f"shard=0001/{PARTITION_FILE}"]
    assert (dataset / STATE_FILE).read_bytes() == state
    conn.execute("UPDATE paths SET width = 512 WHERE path = 'photos/astronaut.png'")
    conn.commit()
    conn.close()

    # what a killed run leaves: a temporary file of a process that is gone (readers skip it), and
    # a partition renamed into place after the state was last written (here: touched)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    leftover = dataset / "shard=0000" / f".{PARTITION_FILE}.{gone.stdout.strip()}.0123456789ab.tmp"
    leftover.write_bytes(b"half a partition")
    assert parquet_dataset(dataset).to_table().num_rows == sum(entry["rows"] for entry in json.loads(state)["partitions"].values())
    touched = dataset / "shard=0001" / PARTITION_FILE
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 1))
    result = export_catalog(db, out)
    assert (result.dataset.written, result.dataset.unchanged) == (["0001"], ["0000"])
    assert not leftover.exists()
    assert partitions(dataset)["0000"] == first["0000"] and partitions(dataset)["0001"][2] == first["0001"][2]
    dataset_rows_equal_the_csv(result.paths, db)


def test_the_single_file_of_earlier_versions_becomes_the_dataset(small_catalog, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(pa.table({"path": ["old"]}), out / "annotations.parquet")
    paths = export_all(small_catalog, out)
    assert paths["parquet"].is_dir()
    dataset_rows_equal_the_csv(paths, small_catalog)


@pytest.mark.slow
def test_snakemake_runs_the_export_again_without_rewriting_the_dataset(demo_run, tmp_path):
    """The dataset folder is not a declared output, so Snakemake's delete before the job does not
    touch it: the export job runs again and finds every partition current."""
    workdir = copy_tree(demo_run, tmp_path / "run")
    dataset = workdir / "results" / "annotations.parquet"
    manifest = workdir / "results" / "annotations.parquet.json"

    def export_job() -> dict:
        manifest.unlink()  # the declared output: Snakemake runs the job to make it again
        snakemake(workdir, "--cores", "2", str(manifest.relative_to(workdir)))
        summary = [json.loads(line) for line in (workdir / "logs" / "export.log").read_text().splitlines() if line.startswith("{")][-1]
        return {k.removeprefix("parquet_partitions_"): v for k, v in summary["extra"].items()}

    # the copy's images folder is another absolute path, and every row names it (images_root)
    assert export_job() == {"written": 4, "unchanged": 0, "removed": 0}  # the demo's 4 shards
    before = partitions(dataset)
    assert export_job() == {"written": 0, "unchanged": 4, "removed": 0}
    assert partitions(dataset) == before
    paths = {"csv": workdir / "results" / "annotations.csv", "parquet": dataset, "parquet_manifest": manifest}
    dataset_rows_equal_the_csv(paths, workdir / "results" / "annotations.sqlite")


def test_exports_say_where_each_label_comes_from(tmp_path):
    """label_source ('machine', 'review', 'propagated') and propagated_from in CSV, JSON, Parquet
    and COCO, on a catalog where a relabeled OCR line propagates to its look-alike."""
    from test_propagation import LOOK_ALIKES, image_id, write_cache

    from shardlens.catalog import build_catalog
    from shardlens.review_store import Review
    from shardlens.reviews import record_reviews

    db, store = tmp_path / "results" / "annotations.sqlite", tmp_path / "reviews" / "reviews.sqlite"
    images = {"r.png": {"lines": ["EXIT"]}, "s.png": {"lines": ["EXIT.", "EXlT"]}}
    build_catalog(write_cache(tmp_path / "cache", images, [], LOOK_ALIKES), db, reviews_db=store, log=lambda m: None)
    record_reviews([Review(image_id("r.png"), None, 0, "relabeled", "exit sign")], db, store, "test")
    paths = export_all(db, tmp_path / "out")
    source = f"{image_id('r.png')}/line/0"
    expected = {"EXIT": ("exit sign", "review", None), "EXIT.": ("exit sign", "propagated", source), "EXlT": ("EXlT", "machine", None)}
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        csv_rows = {r["text"]: (r["final_label"], r["label_source"], r["propagated_from"] or None) for r in csv.DictReader(handle)}
    assert csv_rows == expected
    for rows in (json.loads(paths["json"].read_text(encoding="utf-8")), pq.read_table(paths["parquet"]).to_pylist()):
        assert {r["text"]: (r["final_label"], r["label_source"], r["propagated_from"]) for r in rows} == expected
    assert pq.read_table(paths["parquet"]).schema.field("propagated_from").type == pa.string()
    coco = json.loads(paths["coco_text"].read_text(encoding="utf-8"))
    shown = sorted((a["utf8_string"], a["label_source"], a.get("propagated_from"), a.get("review_status")) for a in coco["annotations"])
    assert shown == [("EXlT", "machine", None, None), ("exit sign", "propagated", source, None), ("exit sign", "review", None, "relabeled")]
