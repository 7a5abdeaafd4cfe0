"""The COCO exports, checked with pycocotools itself: every decoded image is listed (also those
without a region), every box goes back to the catalog's box, the label mode decides which boxes
and labels appear, and COCOeval consumes the file (the export scored against itself is AP 1.0)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from shardlens.coco import LABEL_MODES, CocoOptions, coco_detection, coco_text, write_coco
from shardlens.config import load_config
from shardlens.exports import export_all
from shardlens.models.nanodet import COCO_CLASSES
from shardlens.review_store import Review
from shardlens.reviews import record_reviews


def load(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        return COCO(str(path))


def catalog(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    return conn


def catalog_boxes(db: Path, item: str) -> dict[str, list[float]]:
    """item_key -> [x0, y0, x1, y1] for every region (item 'region') or OCR line ('text')."""
    conn = catalog(db)
    column = "region" if item == "region" else "line"
    number = "region_id" if item == "region" else "line_no"
    rows = conn.execute(f"SELECT image_id, {number} AS n, bbox FROM final_annotations WHERE item = ?", (item,)).fetchall()
    conn.close()
    return {f"{r['image_id']}/{column}/{r['n']}": json.loads(r["bbox"]) for r in rows}


def evaluate(gt: COCO, detections: list[dict]) -> float:
    """COCO's AP@[.5:.95] of ``detections`` against ``gt``."""
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.fixture()
def run(small_catalog, tmp_path) -> Path:
    return shutil.copytree(small_catalog.parents[1], tmp_path / "run", symlinks=True)


def test_every_decoded_image_is_listed_with_its_file_and_size(small_catalog, tmp_path):
    paths = export_all(small_catalog, tmp_path / "out")
    root = small_catalog.parents[1] / "images"
    conn = catalog(small_catalog)
    images = {r["path"]: (r["width"], r["height"], r["image_id"]) for r in conn.execute("SELECT * FROM images WHERE status = 'ok'")}
    failed = [r[0] for r in conn.execute("SELECT path FROM paths WHERE status != 'ok'")]
    with_regions = {r[0] for r in conn.execute("SELECT DISTINCT image_id FROM regions")}
    conn.close()
    assert failed == ["plain/broken.jpg"]
    for kind in ("coco", "coco_text"):
        coco = load(paths[kind])
        listed = coco.loadImgs(coco.getImgIds())
        assert len(listed) == len(images) == 5, kind  # the copy of cat.jpg is one image, the broken file none
        assert sorted(i["id"] for i in listed) == list(range(1, len(images) + 1))
        for image in listed:
            width, height, image_id = images[image["file_name"]]
            assert (image["width"], image["height"], image["shardlens_image_id"]) == (width, height, image_id)
            with Image.open(root / image["file_name"]) as opened:  # file_name is relative to the images root
                assert opened.size == (width, height)
        assert coco.dataset["info"]["images_root"] == root.resolve().as_posix()
    coco = load(paths["coco"])
    without = [i for i in coco.loadImgs(coco.getImgIds()) if i["shardlens_image_id"] not in with_regions]
    assert {i["file_name"] for i in without} == {"plain/gradient.jpg", "signs/open.png"}  # nothing found, and text only
    assert all(coco.getAnnIds(imgIds=[i["id"]]) == [] for i in without)


def test_every_box_goes_back_to_the_catalog(small_catalog, tmp_path):
    paths = export_all(small_catalog, tmp_path / "out")
    conn = catalog(small_catalog)
    machine = {f"{r['image_id']}/region/{r['region_id']}": (r["caption"], r["score"]) for r in conn.execute("SELECT * FROM regions")}
    conn.close()
    for kind, item in (("coco", "region"), ("coco_text", "text")):
        coco = load(paths[kind])
        boxes = catalog_boxes(small_catalog, item)
        anns = coco.loadAnns(coco.getAnnIds())
        assert anns and sorted(a["item_key"] for a in anns) == sorted(boxes), kind  # each item once (the cat is in two shards)
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == pytest.approx(boxes[ann["item_key"]], abs=1e-6), ann
            assert w > 0 and h > 0 and ann["area"] == pytest.approx(w * h, abs=1e-3) and ann["iscrowd"] == 0
            image = coco.loadImgs(ann["image_id"])[0]
            assert ann["item_key"].startswith(image["shardlens_image_id"] + "/")
            assert x + w <= image["width"] + 1e-6 and y + h <= image["height"] + 1e-6
    coco = load(paths["coco"])
    for ann in coco.loadAnns(coco.getAnnIds()):
        label, score = machine[ann["item_key"]]
        assert coco.loadCats(ann["category_id"])[0]["name"] == label and ann["score"] == score
        assert ann["item_key"].endswith(f"/region/{ann['region_id']}") and ann["label_source"] == "machine"
    text = load(paths["coco_text"])
    conn = catalog(small_catalog)
    lines = {f"{r['image_id']}/line/{r['line_no']}": r for r in conn.execute("SELECT * FROM ocr_lines")}
    conn.close()
    for ann in text.loadAnns(text.getAnnIds()):
        line = lines[ann["item_key"]]
        assert (ann["utf8_string"], ann["score"], ann["legibility"]) == (line["text"], line["confidence"], "legible")
        assert ann.get("language") == line["language"]  # absent where no guess was safe
    assert {a["utf8_string"] for a in text.loadAnns(text.getAnnIds())} == {"OPEN 24 HOURS", "Main Street"}


def test_categories_are_the_vocabulary_then_the_other_labels(small_catalog, tmp_path):
    paths = export_all(small_catalog, tmp_path / "out")
    categories = load(paths["coco"]).dataset["categories"]
    assert [c["name"] for c in categories[: len(COCO_CLASSES)]] == list(COCO_CLASSES)
    assert [c["id"] for c in categories] == list(range(1, len(categories) + 1))
    # a configured vocabulary comes first, in its order
    config = load_config(None, detect={"backend": "nanodet", "vocabulary": ["kitty", "human"]})
    document = coco_detection(small_catalog, CocoOptions.from_config(config))
    names = [c["name"] for c in document["categories"]]
    assert names[:2] == ["kitty", "human"] and {"cat", "person"} <= set(names)  # found labels follow


def review(db: Path, store: Path) -> dict[str, str]:
    """Relabel the cat, reject the person, accept the cup, correct one OCR line, reject the
    other; return the item keys by role."""
    conn = catalog(db)
    region = {r["caption"]: r["image_id"] for r in conn.execute("SELECT image_id, caption FROM regions WHERE region_id = 0")}
    lines = conn.execute("SELECT image_id, line_no, text FROM ocr_lines ORDER BY line_no").fetchall()
    conn.close()
    reviews = [
        Review(region["cat"], 0, None, "relabeled", "tabby cat", "ana"),
        Review(region["person"], 0, None, "rejected", None, "ana"),
        Review(region["dining table"], 0, None, "accepted", "dining table", "ana"),
        Review(lines[0]["image_id"], None, lines[0]["line_no"], "relabeled", "OPEN 24 HRS", "ana"),
        Review(lines[1]["image_id"], None, lines[1]["line_no"], "rejected", None, "ana"),
    ]
    assert record_reviews(reviews, db, store, "test") == 5
    return {
        "cat": f"{region['cat']}/region/0",
        "person": f"{region['person']}/region/0",
        "table": f"{region['dining table']}/region/0",
        "line0": f"{lines[0]['image_id']}/line/{lines[0]['line_no']}",
        "line1": f"{lines[1]['image_id']}/line/{lines[1]['line_no']}",
    }


def test_label_modes_final_machine_and_reviewed(run, tmp_path):
    db = run / "results" / "annotations.sqlite"
    keys = review(db, run / "reviews" / "reviews.sqlite")
    exported = {}
    for mode in ("final", "machine", "reviewed"):
        config = load_config(run / "config" / "config.yaml", export={"coco_labels": mode})
        paths = export_all(db, tmp_path / mode, config=config)
        coco, text = load(paths["coco"]), load(paths["coco_text"])
        assert coco.dataset["info"]["labels"] == mode
        name = {c["id"]: c["name"] for c in coco.dataset["categories"]}
        exported[mode] = (
            {a["item_key"]: (name[a["category_id"]], a["label_source"], a.get("review_status")) for a in coco.loadAnns(coco.getAnnIds())},
            {a["item_key"]: a["utf8_string"] for a in text.loadAnns(text.getAnnIds())},
            coco.dataset["categories"],
            len(coco.getImgIds()),
        )
    final, machine, reviewed = exported["final"], exported["machine"], exported["reviewed"]
    # final: reviewed labels over machine labels, the rejected box and line left out
    assert final[0][keys["cat"]] == ("tabby cat", "review", "relabeled")
    assert final[0][keys["table"]] == ("dining table", "review", "accepted")
    assert keys["person"] not in final[0] and keys["person"] in machine[0]
    assert final[1] == {keys["line0"]: "OPEN 24 HRS"}
    # machine: what the detector and OCR found, reviews ignored
    assert machine[0][keys["cat"]] == ("cat", "machine", None) and machine[0][keys["person"]] == ("person", "machine", None)
    assert set(machine[0]) == set(final[0]) | {keys["person"]}
    assert set(machine[1].values()) == {"OPEN 24 HOURS", "Main Street"}
    unreviewed = set(machine[0]) - {keys["cat"], keys["person"], keys["table"]}
    assert unreviewed and all(final[0][k] == machine[0][k] for k in unreviewed)
    # reviewed: only what a person accepted or relabeled
    assert set(reviewed[0]) == {keys["cat"], keys["table"]} and reviewed[1] == {keys["line0"]: "OPEN 24 HRS"}
    # every mode lists every image, under the same categories (the reviewed label among them)
    assert final[3] == machine[3] == reviewed[3] == 5
    assert final[2] == machine[2] == reviewed[2] and "tabby cat" in [c["name"] for c in final[2]]


def test_cocoeval_consumes_the_export(run, tmp_path):
    db = run / "results" / "annotations.sqlite"
    review(db, run / "reviews" / "reviews.sqlite")
    paths = export_all(db, tmp_path / "final")
    for kind in ("coco", "coco_text"):
        gt = load(paths[kind])
        anns = gt.loadAnns(gt.getAnnIds())
        detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": a["score"]} for a in anns]
        assert evaluate(gt, detections) == pytest.approx(1.0), kind
        # and it can tell a worse result: every box shifted by half its width
        shifted = [{**d, "bbox": [d["bbox"][0] + d["bbox"][2] / 2, *d["bbox"][1:]]} for d in detections]
        assert evaluate(gt, shifted) < 0.5, kind
    # the machine's output scored against the final labels: the rejected and relabeled boxes cost
    machine = export_all(db, tmp_path / "machine", coco_labels="machine")
    gt = load(paths["coco"])
    dt = load(machine["coco"])
    score = evaluate(gt, [{k: a[k] for k in ("image_id", "category_id", "bbox", "score")} for a in dt.loadAnns(dt.getAnnIds())])
    assert 0 < score < 1


def test_the_streamed_files_are_the_documents_json_dump_writes(run, tmp_path):
    """write_coco streams images and annotations from cursors, a chunk at a time; each file is
    byte for byte the document json.dump writes (coco_detection and coco_text hold it whole)."""
    db = run / "results" / "annotations.sqlite"
    review(db, run / "reviews" / "reviews.sqlite")
    for mode in LABEL_MODES:
        options = CocoOptions.from_config(load_config(None), images_root="/images", labels=mode)
        paths = write_coco(db, tmp_path / mode, options)
        for kind, document in (("coco", coco_detection), ("coco_text", coco_text)):
            assert paths[kind].read_text(encoding="utf-8") == json.dumps(document(db, options), ensure_ascii=False, indent=1), (mode, kind)


def test_config_refuses_an_unknown_label_mode():
    with pytest.raises(Exception, match="coco_labels|bogus"):
        load_config(None, export={"coco_labels": "bogus"})
    with pytest.raises(ValueError, match="expected one of final, machine, reviewed"):
        CocoOptions(labels="bogus", vocabulary=())


def shardlens(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardlens.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_export_writes_the_coco_files(small_catalog, tmp_path):
    workdir = small_catalog.parents[1]
    out = tmp_path / "out"
    proc = shardlens(workdir, "export", str(small_catalog), str(out), "--coco-labels", "machine")
    assert proc.returncode == 0, proc.stderr
    assert f"coco: {out / 'annotations.coco.json'}" in proc.stdout and f"coco_text: {out / 'annotations.coco_text.json'}" in proc.stdout
    coco = load(out / "annotations.coco.json")
    assert coco.dataset["info"]["labels"] == "machine" and len(coco.getImgIds()) == 5
    assert coco.dataset["info"]["images_root"] == (workdir / "images").resolve().as_posix()
    # from elsewhere, with an explicit images root
    proc = shardlens(tmp_path, "export", str(small_catalog), str(tmp_path / "other"), "--images", str(workdir / "images"))
    assert proc.returncode == 0, proc.stderr
    assert load(tmp_path / "other" / "annotations.coco.json").dataset["info"]["images_root"] == (workdir / "images").resolve().as_posix()
    proc = shardlens(workdir, "export", str(small_catalog), str(tmp_path / "bad"), "--coco-labels", "everything")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --coco-labels 'everything': expected one of final, machine, reviewed"
    proc = shardlens(tmp_path, "export", str(tmp_path / "none.sqlite"), str(tmp_path / "bad"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "none.sqlite" in proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_the_demo_run_writes_both_coco_files(demo_run):
    db = demo_run / "results" / "annotations.sqlite"
    conn = catalog(db)
    images = conn.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]
    conn.close()
    root = demo_run / "resources" / "demo"
    for kind, item in (("coco", "region"), ("coco_text", "text")):
        coco = load(demo_run / "results" / f"annotations.{kind}.json")
        assert len(coco.getImgIds()) == images
        assert all((root / i["file_name"]).is_file() for i in coco.loadImgs(coco.getImgIds()))
        boxes = catalog_boxes(db, item)
        anns = coco.loadAnns(coco.getAnnIds())
        assert anns and {a["item_key"] for a in anns} == set(boxes)
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert [x, y, x + w, y + h] == pytest.approx(boxes[ann["item_key"]], abs=1e-6)
    names = {c["name"] for c in load(demo_run / "results" / "annotations.coco.json").dataset["categories"]}
    assert {"person", "cat", "cup"} <= names
