"""Typed exports: every table export names each row's image size and images root; Parquet keeps the
types (review columns are strings, candidates a list of structs); a CSV read with the README's
call takes review strings in pandas 3 and goes back through the review import."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardlens.exports import REVIEW_COLUMNS, export_all
from shardlens.reviews import import_review_csv


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
    parquet_rows = pq.read_table(paths["parquet"]).to_pylist()
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
    assert {r["images_root"] for r in pq.read_table(paths["parquet"]).to_pylist()} == {elsewhere.resolve().as_posix()}
    # a catalog away from its run folder, with a config whose images folder is not there: unknown
    lone = tmp_path / "lone" / "annotations.sqlite"
    lone.parent.mkdir()
    shutil.copy(small_catalog, lone)
    from shardlens.config import load_config

    paths = export_all(lone, tmp_path / "b", config=load_config(None, images=str(tmp_path / "missing")))
    assert {r["images_root"] for r in pq.read_table(paths["parquet"]).to_pylist()} == {None}
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        assert {r["images_root"] for r in csv.DictReader(handle)} == {""}


def test_parquet_types_and_candidates(small_catalog, tmp_path):
    paths = export_all(small_catalog, tmp_path / "out")
    table = pq.read_table(paths["parquet"])
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


def test_exports_say_where_each_label_comes_from(tmp_path):
    """label_source ('machine', 'review', 'propagated') and propagated_from in CSV, JSON, Parquet
    and COCO, on a catalog where a relabeled OCR line propagates to its look-alike."""
    from test_propagation import LOOK_ALIKES, image_id, write_cache

    from shardlens.catalog import build_catalog
    from shardlens.reviews import Review, record_reviews

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
