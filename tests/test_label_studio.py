"""Label Studio both ways, checked with Label Studio's own SDK: the generated labeling config and
every exported task validate with label-studio-sdk (in its own venv, `make labelstudio-venv`),
image URLs survive hostile names for every scheme, a reviewed label goes out as an annotation,
and a Label Studio export comes back into the review store, all or nothing."""

from __future__ import annotations

import copy
import csv
import json
import os
import sqlite3
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from urllib.request import urlopen

import pytest
import yaml
from PIL import Image

from shardlens.label_studio import image_url, labeling_config

from conftest import REPO, copy_tree, skip_unless_available, snakemake, text_image, write_config

# Names that break naive URLs: a space, '#' (fragment), '?' (query), '%' (escape), '&', '+',
# non-ASCII, and a leading '=' (a spreadsheet formula).
HOSTILE_NAMES = [
    "a b#1?.png",
    "100% ü&+.png",
    "=cmd|' calc'!A0.jpg",
    "Žluťoučký kůň/ñ.jpg",
]
PREFIXES = ["/data/local-files/?d=", "/data/local-files/?d=photos/", "s3://bucket/images/", "https://host:8443/images/"]


def decoded_path(url: str, prefix: str) -> str:
    """What a server, or Label Studio, reads back from ``url``: the image's path again."""
    if "?d=" in prefix:
        (value,) = parse_qs(urlsplit(url).query, keep_blank_values=True)["d"]
        return value.removeprefix(parse_qs(urlsplit(prefix + "x").query)["d"][0][:-1])
    base = urlsplit(prefix)
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == (base.scheme, base.netloc) and not parts.query and not parts.fragment
    return unquote(parts.path).removeprefix(unquote(base.path))


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_image_url_encodes_one_way_for_every_scheme(prefix, name):
    url = image_url(prefix, name)
    assert url.startswith(prefix)
    tail = url[len(prefix) :]
    assert tail.isascii() and not set(tail) & set(" #?&%+='|!") - {"%"} and "%" in tail
    assert decoded_path(url, prefix) == name


def labelstudio_python() -> Path:
    venv = Path(os.environ.get("SHARDLENS_LABELSTUDIO_VENV") or REPO / ".venv-labelstudio")
    python = venv / "bin" / "python"
    if not python.exists():
        skip_unless_available("LABELSTUDIO", f"no Label Studio venv at {venv}: run `make labelstudio-venv`")
    return python


# Runs in the Label Studio venv. LabelInterface.validate_task() of label-studio-sdk 2.1.2 calls
# validate_prediction() without its argument (a TypeError for any task with predictions), so
# this does what it means to: the config's own checks, the data keys of every object tag, and
# every prediction and annotation with the SDK's region validation (labels, geometry, types).
VALIDATE = r"""
import json, sys
from label_studio_sdk.label_interface import LabelInterface
config, tasks = sys.argv[1:3]
li = LabelInterface(open(config, encoding="utf-8").read())
li.validate()
problems, checked = [], {"tasks": 0, "predictions": 0, "annotations": 0, "results": 0}
for n, task in enumerate(json.load(open(tasks, encoding="utf-8"))):
    checked["tasks"] += 1
    for obj in li.objects:
        if obj.value_is_variable and task["data"].get(obj.value_name) is None:
            problems.append(f"task {n}: no data.{obj.value_name}")
    for kind in ("predictions", "annotations"):
        for entry in task.get(kind, []):
            checked[kind] += 1
            checked["results"] += len(entry["result"])
            problems += [f"task {n} {kind}: {e}" for e in li.validate_prediction(entry, return_errors=True)]
            if kind == "annotations" and not li.validate_annotation(entry):
                problems.append(f"task {n}: validate_annotation refused it")
print(json.dumps({"problems": problems, "checked": checked, "labels": {c.name: list(c.labels or []) for c in li.controls}}))
"""


def sdk_validate(config: Path, tasks: Path) -> dict:
    proc = subprocess.run([str(labelstudio_python()), "-c", VALIDATE, str(config), str(tasks)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def config_labels(config: Path) -> list[str]:
    root = ET.parse(config).getroot()
    (tool,) = root.findall("RectangleLabels")
    return [label.get("value") for label in tool.findall("Label")]


def test_labeling_config_escapes_label_values():
    labels = ['say "cheese"', "<b>&amp;</b>", '=HYPERLINK("x")', "Ελληνικά", "line\nbreak", "tab\there"]
    xml = labeling_config(labels)
    root = ET.fromstring(xml)
    assert [label.get("value") for label in root.find("RectangleLabels").findall("Label")] == labels
    assert {child.tag for child in root} == {"Image", "Header", "RectangleLabels", "Rectangle", "TextArea", "Choices"}
    assert root.find("TextArea").get("perRegion") == "true"


def test_the_streamed_tasks_are_the_list_json_dumps_writes(small_catalog, tmp_path):
    """write_label_studio streams one image's task at a time; the file is byte for byte the list
    json.dumps writes, and every task names the models, the catalog's own where a stage found
    nothing in the image."""
    from shardlens.config import load_config
    from shardlens.label_studio import label_studio_tasks, write_label_studio
    from shardlens.ontology import label_space

    prefix = "/data/local-files/?d=images/"
    paths = write_label_studio(small_catalog, tmp_path, prefix, label_space(load_config(None)))
    tasks = label_studio_tasks(small_catalog, prefix)
    assert paths["labelstudio"].read_text(encoding="utf-8") == json.dumps(tasks, ensure_ascii=False, indent=1)
    conn = sqlite3.connect(small_catalog)
    (detector,) = {v for (v,) in conn.execute("SELECT DISTINCT detector_version FROM regions")}
    (ocr,) = {v for (v,) in conn.execute("SELECT DISTINCT source FROM ocr_lines")}
    found = {row for row in conn.execute("SELECT COUNT(DISTINCT image_id) FROM regions UNION ALL SELECT COUNT(DISTINCT image_id) FROM ocr_lines")}
    conn.close()
    assert found == {(3,), (1,)}  # some images without regions, most without lines: they take the catalog's versions
    assert len(tasks) == 5 and {p["model_version"] for t in tasks for p in t["predictions"]} == {f"{detector} | {ocr}"}


# -- the default demo, as `make demo` builds it --------------------------------------------------


@pytest.mark.slow
def test_demo_label_studio_export_validates_with_the_sdk(demo_run, tmp_path):
    results = demo_run / "results"
    config, tasks_path = results / "labelstudio_config.xml", results / "labelstudio_tasks.json"
    verdict = sdk_validate(config, tasks_path)
    assert verdict["problems"] == []
    conn = sqlite3.connect(results / "annotations.sqlite")
    images = conn.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]
    items = conn.execute("SELECT COUNT(*) FROM regions").fetchone()[0] + 2 * conn.execute("SELECT COUNT(*) FROM ocr_lines").fetchone()[0]
    detector_versions = {v for (v,) in conn.execute("SELECT DISTINCT detector_version FROM regions")}
    ocr_sources = {v for (v,) in conn.execute("SELECT DISTINCT source FROM ocr_lines")}
    machine_labels = {v for (v,) in conn.execute("SELECT DISTINCT label FROM region_labels")}
    conn.close()
    assert verdict["checked"] == {"tasks": images, "predictions": images, "annotations": 0, "results": items}

    # the config holds every label: the detector's vocabulary (COCO-80 for the default nanodet)
    # and every candidate in the catalog; the SDK read the same list
    from shardlens.models.nanodet import COCO_CLASSES

    labels = config_labels(config)
    assert set(labels) >= set(COCO_CLASSES) | machine_labels and len(labels) == len(set(labels))
    assert verdict["labels"]["label"] == labels and verdict["labels"]["review"] == ["reject"]

    # model_version names the detector and the OCR engine with their weights' short hashes
    tasks = json.loads(tasks_path.read_text())
    versions = {p["model_version"] for t in tasks for p in t["predictions"]}
    assert len(detector_versions) == len(ocr_sources) == 1 and versions == {f"{detector_versions.pop()} | {ocr_sources.pop()}"}
    detector, ocr = next(iter(versions)).split(" | ")
    assert detector.startswith("nanodet:") and ocr.startswith("rapidocr-")
    assert all(len(part.rsplit("@", 1)[1]) == 12 for part in (detector, ocr))

    # the SDK's validation can fail: a label outside the config is refused
    broken = copy.deepcopy(tasks)
    region = next(r for t in broken for p in t["predictions"] for r in p["result"] if r["type"] == "rectanglelabels")
    region["value"]["rectanglelabels"] = ["not a label in the config"]
    bad = tmp_path / "broken_tasks.json"
    bad.write_text(json.dumps(broken))
    assert any("not a label in the config" in p for p in sdk_validate(config, bad)["problems"])


# -- a small real run with hostile names: URLs, reviews out and back in --------------------------


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> Path:
    """A real run on images with names that break naive URLs, a cat photo (a region) and two
    text images (OCR lines)."""
    from skimage import data

    root = tmp_path_factory.mktemp("label_studio")
    images = root / "images"
    (images / "Žluťoučký kůň").mkdir(parents=True)
    Image.fromarray(data.chelsea()).save(images / "=cmd|' calc'!A0.jpg", quality=90)
    text_image(["OPEN 24 HOURS", "Main Street"]).save(images / "a b#1?.png")
    text_image(["PARKING"]).save(images / "100% ü&+.png")
    Image.fromarray(data.coffee()).save(images / "Žluťoučký kůň" / "ñ.jpg", quality=90)
    workdir = root / "run"
    write_config(workdir, images=str(images), shards={"count": 1})
    snakemake(workdir, "--cores", "2")
    return workdir


def shardlens(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardlens.cli", *args], cwd=workdir, capture_output=True, text=True, timeout=300)


def copy_run(run: Path, dst: Path) -> Path:
    """The run's catalog and config, to write reviews into (the fixture stays as it is)."""
    (dst / "results").mkdir(parents=True)
    (dst / "config").mkdir()
    (dst / "config" / "config.yaml").write_text((run / "config" / "config.yaml").read_text())
    (dst / "results" / "annotations.sqlite").write_bytes((run / "results" / "annotations.sqlite").read_bytes())
    return dst


def export(workdir: Path, *args: str) -> list[dict]:
    proc = shardlens(workdir, "export", "results/annotations.sqlite", "results", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads((workdir / "results" / "labelstudio_tasks.json").read_text())


@pytest.mark.slow
def test_hostile_names_reach_the_image_for_every_prefix(hostile_run, tmp_path):
    images = Path(yaml.safe_load((hostile_run / "config" / "config.yaml").read_text())["images"])
    on_disk = sorted(str(p.relative_to(images)) for p in images.rglob("*") if p.is_file())
    assert sorted(HOSTILE_NAMES) == on_disk

    # a real web server on the images folder: every task URL fetches its own file's bytes
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(images)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    workdir = copy_run(hostile_run, tmp_path / "w")
    try:
        prefix = f"http://127.0.0.1:{server.server_address[1]}/"
        tasks = export(workdir, "--url-prefix", prefix)
        assert sorted(t["data"]["path"] for t in tasks) == on_disk
        for task in tasks:
            with urlopen(task["data"]["image"], timeout=30) as response:
                assert response.read() == (images / task["data"]["path"]).read_bytes()
    finally:
        server.shutdown()
        server.server_close()

    # the same paths back out of Label Studio's local-files and S3 URLs; the config key sets it
    for prefix in ["/data/local-files/?d=photos/", "s3://bucket/key prefix/"]:
        config = workdir / "config" / "config.yaml"
        config.write_text(config.read_text() + f"export: {{label_studio_url_prefix: {json.dumps(prefix)}}}\n")
        tasks = export(workdir)
        assert sorted(decoded_path(t["data"]["image"], prefix) for t in tasks) == on_disk
        config.write_text((hostile_run / "config" / "config.yaml").read_text())
    verdict = sdk_validate(workdir / "results" / "labelstudio_config.xml", workdir / "results" / "labelstudio_tasks.json")
    assert verdict["problems"] == [] and verdict["checked"]["tasks"] == len(on_disk)


def final_labels(workdir: Path) -> dict[tuple, tuple]:
    conn = sqlite3.connect(workdir / "results" / "annotations.sqlite")
    rows = conn.execute(
        "SELECT i.path, f.item, COALESCE(f.region_id, f.line_no), f.machine_label, f.final_label, f.review_status, f.reviewer "
        "FROM final_annotations f JOIN images i USING (image_id)"
    ).fetchall()
    conn.close()
    return {(path, item, n): (machine, final, status, reviewer) for path, item, n, machine, final, status, reviewer in rows}


def store_rows(workdir: Path) -> list[tuple]:
    db = workdir / "reviews" / "reviews.sqlite"
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    rows = sorted(conn.execute("SELECT item_key, status, label, reviewer, source FROM reviews").fetchall())
    conn.close()
    return rows


def as_label_studio_export(tasks: list[dict]) -> list[dict]:
    """What Label Studio's JSON export holds after the tasks were imported (their annotations
    now completed by the importing user, 1) and a reviewer, 7, submitted a new annotation from
    each task's predictions as they were (Label Studio keeps the ids of the results it copies)."""
    exported = []
    for n, task in enumerate(tasks, start=1):
        imported = [
            {**copy.deepcopy(a), "id": 300 + n, "completed_by": 1, "task": 100 + n, "created_username": " admin@example.org, 1"}
            for a in task.get("annotations", [])
        ]
        results = [copy.deepcopy(r) for p in task["predictions"] for r in p["result"]]
        for result in results:
            result.pop("score", None)
            result["origin"] = "prediction"
        exported.append(
            {
                "id": 100 + n, "data": task["data"], "predictions": task["predictions"], "project": 1,
                "annotations": [{
                    "id": 500 + n, "completed_by": {"id": 7, "email": "ana@example.org"}, "result": results,
                    "was_cancelled": False, "ground_truth": False, "created_at": "2026-11-30T10:00:00Z",
                    "updated_at": "2026-11-30T10:05:00Z", "lead_time": 12.5, "task": 100 + n,
                }, *imported],
            }
        )  # fmt: skip
    return exported


def results_of(exported: list[dict], path: str) -> list[dict]:
    return next(t for t in exported if t["data"]["path"] == path)["annotations"][0]["result"]


@pytest.mark.slow
def test_label_studio_round_trip(hostile_run, tmp_path):
    workdir = copy_run(hostile_run, tmp_path / "w")
    before = final_labels(workdir)
    cat = ("=cmd|' calc'!A0.jpg", "region", 0)
    line = next(k for k, v in before.items() if k[0] == "a b#1?.png" and k[1] == "text" and v[0] == "Main Street")
    parking = next(k for k, v in before.items() if k[0] == "100% ü&+.png" and k[1] == "text")
    assert before[cat][0] == "cat" and all(v[2] is None for v in before.values())

    # a review made elsewhere goes out as an annotation, not as a prediction
    sheet = tmp_path / "one.csv"
    with (hostile_run / "results" / "annotations.csv").open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["text"] == "PARKING"]
    rows[0].update(review_status="relabeled", review_label="PARKING LOT", reviewer="bo")
    with sheet.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = shardlens(workdir, "import-reviews", str(sheet))
    assert proc.returncode == 0, proc.stderr
    tasks = export(workdir)
    task = next(t for t in tasks if t["data"]["path"] == parking[0])
    line_id = f"line-{parking[2]}"
    assert line_id not in {r["id"] for p in task["predictions"] for r in p["result"]}
    (annotation,) = task["annotations"]
    texts = [r["value"]["text"] for r in annotation["result"] if r["id"] == line_id and r["type"] == "textarea"]
    assert texts == [["PARKING LOT"]] and "bo" in annotation["result"][0]["meta"]["text"][0]
    verdict = sdk_validate(workdir / "results" / "labelstudio_config.xml", workdir / "results" / "labelstudio_tasks.json")
    assert verdict["problems"] == [] and verdict["checked"]["annotations"] == 1

    # in Label Studio: relabel the coffee cup, reject the line "Main Street", and submit
    # everything else as predicted (the cat among it: accepted)
    exported = as_label_studio_export(tasks)
    coffee = next(k for k in before if k[0] == "Žluťoučký kůň/ñ.jpg" and k[1] == "region")
    (relabel,) = [r for r in results_of(exported, coffee[0]) if r["id"] == f"region-{coffee[2]}"]
    relabel["value"]["rectanglelabels"] = ["coffee mug"]  # a label of the reviewer's own
    (text,) = [r for r in results_of(exported, line[0]) if r["id"] == f"line-{line[2]}" and r["type"] == "textarea"]
    reject = {**copy.deepcopy(text), "from_name": "review", "type": "choices"}
    reject["value"] = {k: v for k, v in text["value"].items() if k != "text"} | {"choices": ["reject"]}
    results_of(exported, line[0]).append(reject)
    ls_export = tmp_path / "project-1-at-2026-11-30.json"
    ls_export.write_text(json.dumps(exported, ensure_ascii=False))
    proc = shardlens(workdir, "import-reviews", str(ls_export))
    assert proc.returncode == 0, proc.stderr

    after = final_labels(workdir)
    assert after[cat][1:] == ("cat", "accepted", "ana@example.org")
    assert after[coffee][1:] == ("coffee mug", "relabeled", "ana@example.org")
    assert after[line][1:] == (None, "rejected", "ana@example.org")
    assert after[parking][1:] == ("PARKING LOT", "relabeled", "bo")  # unchanged: the earlier review stays
    assert all(v[2] == "accepted" for k, v in after.items() if k not in (coffee, line, parking))
    sources = {key: source for key, *_, source in store_rows(workdir)}
    assert set(sources.values()) == {"csv:one.csv", "labelstudio:project-1-at-2026-11-30.json"}

    # exported again, the reviews go out as annotations (the new label in the config) and
    # Label Studio's export of that, unchanged, changes nothing
    tasks = export(workdir)
    assert "coffee mug" in config_labels(workdir / "results" / "labelstudio_config.xml")
    assert all(not p["result"] for t in tasks for p in t["predictions"])
    verdict = sdk_validate(workdir / "results" / "labelstudio_config.xml", workdir / "results" / "labelstudio_tasks.json")
    assert verdict["problems"] == [] and verdict["checked"]["annotations"] == len(tasks)
    rejected = [r for t in tasks for r in t["annotations"][0]["result"] if r["from_name"] == "review"]
    assert [r["id"] for r in rejected] == [f"line-{line[2]}"]
    stored = store_rows(workdir)
    again = [{**t, "annotations": [{**t["annotations"][0], "completed_by": 9}]} for t in tasks]
    (tmp_path / "again.json").write_text(json.dumps(again, ensure_ascii=False))
    proc = shardlens(workdir, "import-reviews", str(tmp_path / "again.json"))
    assert proc.returncode == 0 and ": 0 reviews stored" in proc.stdout
    assert store_rows(workdir) == stored

    # the workflow's import_reviews rule takes the JSON export as well
    relabel = copy.deepcopy(exported)
    for result in results_of(relabel, cat[0]):
        result["value"]["rectanglelabels"] = ["tabby"]
    (tmp_path / "rule.json").write_text(json.dumps(relabel, ensure_ascii=False))
    run = copy_tree(hostile_run, tmp_path / "rule")
    config = yaml.safe_load((hostile_run / "config" / "config.yaml").read_text())
    write_config(run, **config, reviews={"import_csv": str(tmp_path / "rule.json")})
    snakemake(run, "--cores", "1", "import_reviews")
    assert json.loads((run / "results" / "review_imports" / "rule.json").read_text())["reviews"] >= 1
    assert ("relabeled", "tabby") in {(s, label) for _, s, label, *_ in store_rows(run)}


@pytest.mark.slow
def test_a_bad_export_lists_every_problem_and_changes_nothing(hostile_run, tmp_path):
    workdir = copy_run(hostile_run, tmp_path / "w")
    exported = as_label_studio_export(export(workdir))
    cat_task = next(t for t in exported if t["data"]["path"] == "=cmd|' calc'!A0.jpg")
    cat = cat_task["annotations"][0]["result"]
    cat[0]["value"]["rectanglelabels"] = ["tabby"]  # a good review, which must not land either
    conflict = copy.deepcopy(cat_task["annotations"][0])  # a second reviewer says otherwise
    conflict["id"], conflict["result"][0]["value"]["rectanglelabels"] = 999, ["dog"]
    cat_task["annotations"].append(conflict)
    cat.append({**copy.deepcopy(cat[0]), "id": "Xk2_pQ9aZt"})  # drawn new in Label Studio
    cat.append({**copy.deepcopy(cat[0]), "id": "region-99"})  # no such region
    unknown = copy.deepcopy(exported[0])
    unknown["data"]["image_id"] = "f" * 64  # a task from another catalog
    foreign = {"id": 77, "data": {"image": "http://x/y.jpg"}, "annotations": []}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([*exported, unknown, foreign], ensure_ascii=False))
    catalog_before = (workdir / "results" / "annotations.sqlite").read_bytes()

    proc = shardlens(workdir, "import-reviews", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    err = proc.stderr
    n = len(exported)
    assert "bad.json: 5 problem(s), nothing was imported" in err
    assert "result Xk2_pQ9aZt (label): drawn in Label Studio" in err
    assert "result region-99: image" in err and "has no region 99" in err
    assert f"task {n + 1} (id {exported[0]['id']}): image 'ffffffffffffffff' (data.path" in err
    assert f"task {exported.index(cat_task) + 1} (id {cat_task['id']}, =cmd|' calc'!A0.jpg), annotation 999, result region-0: conflicts with" in err
    assert f"task {n + 2} (id 77): no data.image_id" in err
    assert "conflicts with" in err and "'tabby'" in err and "'dog'" in err
    assert store_rows(workdir) == []
    assert (workdir / "results" / "annotations.sqlite").read_bytes() == catalog_before

    # not JSON, not a list of tasks, JSON-MIN: one clear problem each, nothing stored
    (tmp_path / "cut.json").write_text(json.dumps(exported)[:500])
    (tmp_path / "min.json").write_text(json.dumps({"image": "x", "label": []}))
    (tmp_path / "min-list.json").write_text(json.dumps([{"id": 1, "image": "x", "label": [], "annotator": 7}]))
    for name, messages in [
        ("cut.json", ["cut.json: 1 problem(s), nothing was imported:\n  - line 1, column ", ": not JSON ("]),
        ("min.json", ["not a Label Studio JSON export: expected a list of tasks, found a dict"]),
        ("min-list.json", ["no 'data' and no 'annotations' (JSON-MIN?)"]),
    ]:
        proc = shardlens(workdir, "import-reviews", str(tmp_path / name))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert all(message in proc.stderr for message in messages), proc.stderr
    assert store_rows(workdir) == []
