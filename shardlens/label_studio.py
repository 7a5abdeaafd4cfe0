"""Label Studio, both ways: a labeling config generated from the catalog's labels, tasks with the
machine labels as predictions and people's reviews as annotations, and the import of Label
Studio's JSON export back into the review store.

Every exported region and OCR line has a result ``id`` that names it (``region-3``,
``line-0``): Label Studio keeps those ids when a reviewer works from the predictions, so each
result in its export maps back onto the item it came from. Reading an export, per item:

- its rectangle still carries the machine label (a line: its OCR text) -> ``accepted``;
- another label (a line: edited text) -> ``relabeled`` with that label or text;
- ``reject`` chosen in its per-region ``review`` choice -> ``rejected``;
- deleted in Label Studio, or in no annotation -> no review (deleting is not rejecting);
- a result drawn new in Label Studio (an id shardlens did not export) is a problem: shardlens
  reviews the items it found, it does not add boxes.

Problems are listed all at once and nothing is stored unless there are none, as for the CSV
(:mod:`shardlens.reviews`).
"""

from __future__ import annotations

import json
import re
import sqlite3
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from .atomic import atomic_open
from .catalog import CatalogError, connect_readonly, fetch_rows
from .export_formats import export_paths
from .json_stream import ArrayWriter
from .review_store import Review, ReviewError
from .review_writer import catalog_problems, store_reviews

# Names in the labeling config; the tasks and the import refer to them.
IMAGE = "image"  # the <Image> object, and the task's data key holding the image URL
LABEL = "label"  # <RectangleLabels>: detection regions
LINE = "line"  # <Rectangle>: OCR lines
TEXT = "transcription"  # <TextArea perRegion>: the text of an OCR line
REVIEW = "review"  # <Choices perRegion>: "reject"
REJECT = "reject"

_ID = re.compile(r"^(region|line)-(\d+)$")


def image_url(prefix: str, path: str) -> str:
    """The URL of an image for Label Studio (or any tool that reads images by URL): ``prefix``
    (Label Studio's local-files endpoint ``/data/local-files/?d=``, ``s3://bucket/key-prefix/``,
    ``https://host/images/``) and the path relative to the images root, percent-encoded (UTF-8)
    so that spaces, ``#``, ``?``, ``&``, ``%``, ``=``, ``+`` and non-ASCII names arrive intact;
    only ``/`` stays as it is. One encoding for every scheme: in a query (``?d=``) and in a path
    alike, and Label Studio's cloud storages decode ``s3://`` keys the same way."""
    return prefix + quote(path, safe="/")


def result_id(item: str, number: int) -> str:
    """The stable result id of a region (``item='region'``) or OCR line (``'text'``)."""
    return f"region-{number}" if item == "region" else f"line-{number}"


def catalog_labels(conn: sqlite3.Connection, vocabulary: list[str]) -> list[str]:
    """Every label a region can carry: the vocabulary, every label candidate and machine label in
    the catalog, and every label a reviewer gave a region. Sorted, each once."""
    labels = set(vocabulary)
    labels.update(label for (label,) in conn.execute("SELECT DISTINCT label FROM region_labels"))
    labels.update(label for (label,) in conn.execute("SELECT DISTINCT caption FROM regions WHERE caption IS NOT NULL"))
    labels.update(
        label for (label,) in conn.execute("SELECT DISTINCT label FROM reviews WHERE region_id IS NOT NULL AND label IS NOT NULL AND status != 'rejected'")
    )
    return sorted(label for label in labels if label and label.strip())


def labeling_config(labels: list[str]) -> str:
    """Label Studio's labeling config (XML): the image, a RectangleLabels tool with ``labels``
    for regions, a Rectangle tool for OCR lines with a per-region TextArea for their text, and a
    per-region ``reject`` choice. Values are escaped by the XML writer."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE, value=f"${IMAGE}", zoom="true")
    ET.SubElement(view, "Header", value="Regions: keep, relabel, or choose reject. Lines: keep, edit the text, or choose reject.")
    regions = ET.SubElement(view, "RectangleLabels", name=LABEL, toName=IMAGE)
    for label in labels:
        ET.SubElement(regions, "Label", value=label)
    ET.SubElement(view, "Rectangle", name=LINE, toName=IMAGE)
    ET.SubElement(
        view, "TextArea", name=TEXT, toName=IMAGE, perRegion="true", editable="true", maxSubmissions="1",
        displayMode="region-list", placeholder="text of the selected line",
    )  # fmt: skip
    review = ET.SubElement(view, "Choices", name=REVIEW, toName=IMAGE, perRegion="true", choice="single")
    ET.SubElement(review, "Choice", value=REJECT)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


MODEL_VERSIONS_SQL = """
SELECT DISTINCT 'detector', detector_version FROM regions WHERE image_id = ?
UNION SELECT DISTINCT 'ocr', source FROM ocr_lines WHERE image_id = ?
"""


def _fallback_models(conn: sqlite3.Connection) -> tuple[str, str]:
    """The catalog's most common detector and OCR engine version strings (over the images each
    stage found something in), for the images a stage found nothing in; from the newest
    manifest where no record names one. Counted over a stream ordered by image: the memory is
    one counter per distinct version string, not one entry per image."""
    fallbacks = []
    for name, sql in (
        ("detector", "SELECT DISTINCT image_id, detector_version FROM regions ORDER BY image_id, detector_version"),
        ("ocr", "SELECT DISTINCT image_id, source FROM ocr_lines ORDER BY image_id, source"),
    ):
        counts: Counter = Counter()
        image, versions = None, set()
        for image_id, version in fetch_rows(conn.execute(sql)):
            if image_id != image and versions:
                counts[" + ".join(sorted(versions))] += 1
                versions = set()
            image = image_id
            versions.add(version)
        if versions:
            counts[" + ".join(sorted(versions))] += 1
        fallbacks.append(counts.most_common(1)[0][0] if counts else _manifest_model(conn, name))
    return fallbacks[0], fallbacks[1]


def _model_version(conn: sqlite3.Connection, image_id: str, fallback_detector: str, fallback_ocr: str) -> str:
    """``detector | OCR engine`` of one image (``backend:model@sha256 prefix``, as its records
    carry them; several versions of one stage joined by `` + ``; the fallback where a stage
    found nothing in it)."""
    versions: dict[str, set[str]] = {"detector": set(), "ocr": set()}
    for stage, version in conn.execute(MODEL_VERSIONS_SQL, (image_id, image_id)):
        versions[stage].add(version)
    detector = " + ".join(sorted(versions["detector"])) if versions["detector"] else fallback_detector
    ocr = " + ".join(sorted(versions["ocr"])) if versions["ocr"] else fallback_ocr
    return f"{detector} | {ocr}"


def _manifest_model(conn: sqlite3.Connection, name: str) -> str:
    """``backend@sha256 prefix`` of a model from the newest manifest (when no record names it)."""
    row = conn.execute("SELECT manifest FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    entry = json.loads(row[0]).get("models", {}).get(name) if row else None
    if not entry:
        return f"{name}: unknown"
    files = sorted(entry.get("files", {}).values())
    return f"{entry['backend']}@{files[0][:12]}" if files else entry["backend"]


def _geometry(bbox: str, width: int, height: int) -> dict:
    """A pixel box ``[x0, y0, x1, y1]`` as Label Studio's percentages, inside the image."""
    x0, y0, x1, y1 = json.loads(bbox)
    x = min(max(100.0 * x0 / width, 0.0), 100.0)
    y = min(max(100.0 * y0 / height, 0.0), 100.0)
    return {
        "x": x, "y": y, "width": min(max(100.0 * (x1 - x0) / width, 0.0), 100.0 - x),
        "height": min(max(100.0 * (y1 - y0) / height, 0.0), 100.0 - y), "rotation": 0,
    }  # fmt: skip


def _item_results(item: sqlite3.Row, width: int, height: int, reviewed: bool) -> list[dict]:
    """The results of one region or line: as a prediction (machine label, score) or, reviewed, as
    part of the reviewer's annotation (reviewed label or text; a rejected item with ``reject``)."""
    number = item["region_id"] if item["item"] == "region" else item["line_no"]
    common = {
        "id": result_id(item["item"], number), "to_name": IMAGE,
        "original_width": width, "original_height": height, "image_rotation": 0,
    }  # fmt: skip
    geometry = _geometry(item["bbox"], width, height)
    rejected = reviewed and item["review_status"] == "rejected"
    shown = item["machine_label"] if rejected or not reviewed else item["final_label"]
    if shown is None:
        return []
    if item["item"] == "region":
        results = [{**common, "from_name": LABEL, "type": "rectanglelabels", "value": {**geometry, "rectanglelabels": [shown]}}]
    else:
        results = [
            {**common, "from_name": LINE, "type": "rectangle", "value": dict(geometry)},
            {**common, "from_name": TEXT, "type": "textarea", "value": {**geometry, "text": [shown]}},
        ]
    if rejected:
        results.append({**common, "from_name": REVIEW, "type": "choices", "value": {**geometry, "choices": [REJECT]}})
    for result in results:
        if reviewed:
            note = f"shardlens review: {item['review_status']}"
            if item["reviewer"]:
                note += f" by {item['reviewer']}"
            if item["reviewed_at"]:
                note += f" at {item['reviewed_at']}"
            result["meta"] = {"text": [note]}
        elif item["score"] is not None:
            result["score"] = round(item["score"], 4)
    return results


TASK_ITEMS_SQL = """
SELECT item, region_id, line_no, bbox, text, machine_label, final_label, score, review_status, reviewer, reviewed_at
FROM final_annotations WHERE image_id = ? ORDER BY item, region_id, line_no
"""


def iter_label_studio_tasks(conn: sqlite3.Connection, url_prefix: str) -> Iterator[dict]:
    """One Label Studio task per readable image, in path order, streamed from the catalog
    (``conn`` with :class:`sqlite3.Row` rows): ``data.image`` (:func:`image_url`),
    ``data.image_id`` and ``data.path``; the unreviewed regions and lines as one prediction
    (``model_version``: detector and OCR engine with their weights' short hashes); the reviewed
    ones as one completed annotation, so a reviewed label never goes out as a prediction."""
    fallback_detector, fallback_ocr = _fallback_models(conn)
    images = conn.execute("SELECT image_id, path, width, height FROM images WHERE status = 'ok' ORDER BY path")
    for image in fetch_rows(images):
        image_id, width, height = image["image_id"], image["width"], image["height"]
        predicted, annotated, scores = [], [], []
        for item in conn.execute(TASK_ITEMS_SQL, (image_id,)):
            reviewed = item["review_status"] is not None
            results = _item_results(item, width, height, reviewed)
            (annotated if reviewed else predicted).extend(results)
            if results and not reviewed:
                scores.append(item["score"] or 0.0)
        task = {
            "data": {IMAGE: image_url(url_prefix, image["path"]), "image_id": image_id, "path": image["path"]},
            "predictions": [
                {
                    "model_version": _model_version(conn, image_id, fallback_detector, fallback_ocr),
                    "score": round(sum(scores) / len(scores), 4) if scores else 0.0,
                    "result": predicted,
                }
            ],
        }
        if annotated:
            task["annotations"] = [{"result": annotated, "was_cancelled": False, "ground_truth": False}]
        yield task


def label_studio_tasks(db_path: str | Path, url_prefix: str) -> list[dict]:
    """Every task of :func:`iter_label_studio_tasks` as a list (a small catalog, a test;
    :func:`write_label_studio` streams them)."""
    conn = connect_readonly(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return list(iter_label_studio_tasks(conn, url_prefix))
    finally:
        conn.close()


def write_label_studio(db_path: str | Path, out_dir: str | Path, url_prefix: str, vocabulary: list[str]) -> dict[str, Path]:
    """Write ``labelstudio_tasks.json`` and ``labelstudio_config.xml`` into ``out_dir``:
    ``url_prefix`` is ``export.label_studio_url_prefix``, ``vocabulary`` the labels a region can
    carry before review (:func:`shardlens.ontology.label_space` of the config). The tasks are
    streamed: one image's at a time."""
    names = export_paths(out_dir, formats=["labelstudio"])  # the files' names: shardlens/export_formats.py
    paths = {"labelstudio": names["labelstudio"], "labelstudio_config": names["labelstudio_config"]}
    conn = connect_readonly(db_path)
    conn.row_factory = sqlite3.Row
    try:
        labels = catalog_labels(conn, vocabulary)
        with atomic_open(paths["labelstudio_config"], "w") as handle:
            handle.write(labeling_config(labels))
        with atomic_open(paths["labelstudio"], "w") as handle:
            tasks = ArrayWriter(handle)
            tasks.extend(iter_label_studio_tasks(conn, url_prefix))
            tasks.close()
    finally:
        conn.close()
    return paths


# -- import -------------------------------------------------------------------------------------


def _reviewer(annotation: dict) -> str | None:
    """Who completed an annotation, as Label Studio's export names them."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        name = who.get("email") or who.get("username") or (f"label-studio user {who['id']}" if "id" in who else None)
        if name:
            return str(name)
    username = annotation.get("created_username")  # Label Studio writes " email, user id"
    if isinstance(username, str) and username.strip():
        name, _, user_id = username.strip().rpartition(",")
        return name.strip() if name.strip() and user_id.strip().isdigit() else username.strip()
    if isinstance(who, int) and not isinstance(who, bool):
        return f"label-studio user {who}"
    return None


def read_label_studio_export(path: str | Path, catalog: sqlite3.Connection) -> tuple[list[Review], list[str]]:
    """Every review a Label Studio JSON export holds, mapped onto the catalog's regions and
    lines, and every problem (task, annotation, result and reason). Never raises for content."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [], [f"cannot read the file: {exc.strerror}"]
    try:
        tasks = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        return [], [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]
    except json.JSONDecodeError as exc:
        return [], [f"line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg})"]
    if not isinstance(tasks, list):
        return [], [
            (
                f"not a Label Studio JSON export: expected a list of tasks, found a {type(tasks).__name__} "
                "(export the project with the 'JSON' format, not JSON-MIN or CSV)"
            )
        ]
    if tasks and all(isinstance(task, dict) and "data" not in task and "annotations" not in task for task in tasks):
        return [], ["not a Label Studio JSON export: its tasks have no 'data' and no 'annotations' (JSON-MIN?); export the project with the 'JSON' format"]
    problems: list[str] = []
    reviews: list[Review] = []
    for number, task in enumerate(tasks, start=1):
        _task_reviews(number, task, catalog, reviews, problems)
    return reviews, problems


def _task_reviews(number: int, task, catalog: sqlite3.Connection, reviews: list[Review], problems: list[str]) -> None:
    where_task = f"task {number}"
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        problems.append(f"{where_task}: not a Label Studio task (an object with 'data')")
        return
    task_id = f"id {task['id']}" if isinstance(task.get("id"), int) else ""
    if task_id:
        where_task += f" ({task_id})"
    image_id = task["data"].get("image_id")
    if not isinstance(image_id, str) or not image_id:
        problems.append(f"{where_task}: no data.image_id, so not a task shardlens exported (data: {str(task['data'])[:120]})")
        return
    image = catalog.execute("SELECT path, status FROM images WHERE image_id = ?", (image_id,)).fetchone()
    if image is None:
        problems.append(f"{where_task}: image {image_id[:16]!r} (data.path {task['data'].get('path')!r}) is not in the catalog")
        return
    where_task = f"task {number} ({task_id + ', ' if task_id else ''}{image[0]})"
    annotations = task.get("annotations", [])
    if not isinstance(annotations, list):
        problems.append(f"{where_task}: 'annotations' is not a list")
        return
    for a, annotation in enumerate(annotations, start=1):
        where = f"{where_task}, annotation {annotation.get('id', a) if isinstance(annotation, dict) else a}"
        if not isinstance(annotation, dict) or not isinstance(annotation.get("result", []), list):
            problems.append(f"{where}: not an annotation (an object with a 'result' list)")
            continue
        if annotation.get("was_cancelled"):
            continue  # skipped in Label Studio: no verdict
        reviewer = _reviewer(annotation)
        reviewed_at = annotation.get("updated_at") or annotation.get("created_at")
        reviewed_at = reviewed_at if isinstance(reviewed_at, str) else None
        grouped: dict[str, list[dict]] = {}
        for r, result in enumerate(annotation.get("result", []), start=1):
            if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
                problems.append(f"{where}, result {r}: not a result (an object with a 'value')")
                continue
            if result.get("type") == "relation":
                continue
            grouped.setdefault(str(result.get("id")), []).append(result)
        for rid, results in grouped.items():
            review = _item_review(image_id, rid, results, f"{where}, result {rid}", catalog, problems)
            if review is not None:
                reviews.append(Review(**review, reviewer=reviewer, reviewed_at=reviewed_at))


def _item_review(image_id: str, rid: str, results: list[dict], where: str, catalog: sqlite3.Connection, problems: list[str]) -> dict | None:
    """The verdict on one exported item from the results that carry its id."""
    kinds = {r.get("from_name"): r for r in results}
    match = _ID.match(rid)
    if match is None:
        problems.append(
            f"{where} ({', '.join(sorted(map(str, kinds)))}): drawn in Label Studio, not a region or line shardlens exported; "
            "shardlens reviews only the items it found: delete it there, or keep it in Label Studio only"
        )
        return None
    kind, number = match.group(1), int(match.group(2))
    if kind == "region":
        row = catalog.execute("SELECT caption FROM regions WHERE image_id = ? AND region_id = ? LIMIT 1", (image_id, number)).fetchone()
    else:
        row = catalog.execute("SELECT text FROM ocr_lines WHERE image_id = ? AND line_no = ? LIMIT 1", (image_id, number)).fetchone()
    if row is None:
        problems.append(f"{where}: image {image_id[:12]} has no {'region' if kind == 'region' else 'OCR line'} {number}")
        return None
    machine = (row[0] or "").strip()
    key = {
        "image_id": image_id, "region_id": number if kind == "region" else None,
        "line_no": number if kind == "line" else None, "where": where,
    }  # fmt: skip
    unknown = sorted(str(name) for name in kinds if name not in (LABEL, LINE, TEXT, REVIEW))
    if unknown:
        problems.append(f"{where}: from_name {', '.join(unknown)} is not in shardlens's labeling config ({LABEL}, {LINE}, {TEXT}, {REVIEW})")
        return None
    if REVIEW in kinds:
        choices = kinds[REVIEW]["value"].get("choices")
        if choices == [REJECT]:
            return {**key, "status": "rejected", "label": None}
        if choices:
            problems.append(f"{where}: review choice {choices!r} is not [{REJECT!r}]")
            return None
    if kind == "region":
        if LABEL not in kinds:
            return None  # only a transcription or an empty choice on a region: no verdict
        labels = kinds[LABEL]["value"].get("rectanglelabels")
        if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str) or not labels[0].strip():
            problems.append(f"{where}: needs exactly one label, found {labels!r}")
            return None
        label = labels[0].strip()
    else:
        if TEXT not in kinds:
            if LINE in kinds:
                problems.append(f"{where}: the line's text was emptied; give its text, or choose {REJECT!r}")
            return None
        text = kinds[TEXT]["value"].get("text")
        if isinstance(text, str):
            text = [text]
        if not isinstance(text, list) or not all(isinstance(t, str) for t in text) or not "".join(text).strip():
            problems.append(f"{where}: the line's text is {text!r}; give its text, or choose {REJECT!r}")
            return None
        label = "\n".join(text).strip()
    return {**key, "status": "accepted" if label == machine else "relabeled", "label": label}


def import_label_studio(json_path: str | Path, catalog_db: str | Path, store_db: str | Path) -> int:
    """Import a Label Studio JSON export: all of it or nothing, every problem listed at once
    (:class:`ReviewError`). A verdict equal to the review already stored for an item keeps the
    stored one (its reviewer and time). Returns the number of reviews written."""
    source = f"labelstudio:{Path(json_path).name}"
    try:
        catalog = connect_readonly(catalog_db)
    except CatalogError as exc:
        raise ReviewError(str(json_path), [str(exc)]) from None
    try:
        reviews, problems = read_label_studio_export(json_path, catalog)
        stored = {key: (status, label) for key, status, label in catalog.execute("SELECT item_key, status, label FROM reviews")}
    finally:
        catalog.close()
    problems += catalog_problems(reviews, catalog_db, str(json_path))
    if problems:
        raise ReviewError(str(json_path), problems)
    changed = [r for r in reviews if stored.get(r.item_key) != (r.status, r.label)]
    return store_reviews(changed, catalog_db, store_db, source) if changed else 0
