"""COCO exports of the catalog, for the tools that load COCO first (FiftyOne, CVAT, Detectron2,
MMDetection, pycocotools):

- ``annotations.coco.json``: COCO object detection. Every image of the catalog that decoded
  (``status`` ok), also those without a region; one annotation per region; the categories are
  the ontology's classes (or the detector's vocabulary) plus every label found on a region or
  given to one in a review.
- ``annotations.coco_text.json``: the OCR lines in the same layout with COCO-Text's fields
  (``utf8_string``, ``legibility``, ``language``), one category ``text``.

Labels come from the catalog's ``final_annotations`` view (one place for "a review wins").
``labels`` chooses which: ``final`` (a reviewed label over the machine label), ``machine`` (what
the detector and OCR found, reviews ignored) or ``reviewed`` (reviewed items only). A region or
line rejected in review is a false detection: it is left out of ``final`` and ``reviewed``, never
exported as a positive box; ``machine`` keeps it, because that file is what the machine said (the
detections to score against a reviewed export with ``COCOeval``).

Ids are stable for a given catalog: images are numbered 1.. in path order, annotations 1.. in
image and region (line) order, categories 1.. with the ontology's classes (or the vocabulary) first in their own order
and the other labels after it by name. The durable keys across catalogs are the shardlens ids each
entry carries: ``shardlens_image_id`` (sha256 of the file) on images and ``item_key``
(``{image_id}/region/{n}``, as in the review store) on annotations.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_open
from .catalog import connect_readonly

LABEL_MODES = ("final", "machine", "reviewed")
TEXT_CATEGORY = {"id": 1, "name": "text", "supercategory": "text"}


@dataclass(frozen=True)
class CocoOptions:
    """What the COCO exports need besides the catalog, from the validated config."""

    labels: str  # export.coco_labels: one of LABEL_MODES
    vocabulary: tuple[str, ...]  # the labels regions can carry before review: the first categories
    images_root: str | None = None  # the images folder, as an absolute posix path (None: unknown)

    def __post_init__(self) -> None:
        if self.labels not in LABEL_MODES:
            raise ValueError(f"COCO labels {self.labels!r}: expected one of {', '.join(LABEL_MODES)}")

    @classmethod
    def from_config(cls, config: dict, images_root: str | None = None, labels: str | None = None) -> CocoOptions:
        from .ontology import label_space

        return cls(labels=labels or config["export"]["coco_labels"], vocabulary=tuple(label_space(config)), images_root=images_root)


def _label(row: sqlite3.Row, mode: str) -> str | None:
    """The label an item is exported with under ``mode``; None leaves it out."""
    if mode == "machine":
        return row["machine_label"]
    if mode == "reviewed" and row["review_status"] is None:
        return None
    return row["final_label"]  # NULL for a rejected item (and for an accepted one without label)


def categories(conn: sqlite3.Connection, vocabulary: list[str] | tuple[str, ...]) -> list[dict]:
    """Every label a region can carry (the same set as the Label Studio config: the ontology's
    classes or the detector's vocabulary, the labels found on regions, the labels reviewers gave
    regions), numbered 1..: the vocabulary first in its configured order, so its ids stay fixed,
    then the others by name. The same whatever the label mode, so exports in different modes compare."""
    from .label_studio import catalog_labels

    vocabulary = list(vocabulary)
    names = dict.fromkeys(vocabulary)
    names.update(dict.fromkeys(catalog_labels(conn, vocabulary)))  # sorted; the vocabulary keeps its place
    return [{"id": n, "name": name, "supercategory": "object"} for n, name in enumerate(names, 1)]


def _images(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute("SELECT image_id, path, width, height FROM images WHERE status = 'ok' ORDER BY path")
    return [
        {"id": n, "file_name": path, "width": width, "height": height, "shardlens_image_id": image_id}
        for n, (image_id, path, width, height) in enumerate(rows, 1)
    ]


def xywh(bbox: list[float]) -> list[float]:
    """A catalog box ``[x0, y0, x1, y1]`` as COCO's ``[x, y, width, height]`` (pixels)."""
    x0, y0, x1, y1 = bbox
    return [x0, y0, round(x1 - x0, 6), round(y1 - y0, 6)]


def _info(conn: sqlite3.Connection, options: CocoOptions, what: str) -> dict:
    from . import __version__

    run = conn.execute("SELECT generated_at FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    return {
        "description": f"shardlens {what} ({options.labels} labels)",
        "version": __version__,
        "date_created": run[0] if run else None,  # the cache's manifest: same catalog, same file
        "labels": options.labels,
        "images_root": options.images_root,
    }


def _annotation(n: int, image: dict, bbox: list[float], score: float | None, key: str, row: sqlite3.Row, mode: str) -> dict:
    """The fields a region and a text line share; ``label_source`` says whether a person's review
    or the machine gave the label (``review_status`` follows for a reviewed item)."""
    box = xywh(bbox)
    ann = {
        "id": n,
        "image_id": image["id"],
        "bbox": box,
        "area": round(box[2] * box[3], 4),
        "iscrowd": 0,
        "score": score,
        "item_key": key,
        "label_source": "machine" if mode == "machine" or row["review_status"] is None else "review",
    }
    if ann["label_source"] == "review":
        ann["review_status"] = row["review_status"]
    return ann


def coco_detection(db_path: str | Path, options: CocoOptions) -> dict:
    """The COCO object-detection document of the catalog."""
    conn = connect_readonly(db_path)
    conn.row_factory = sqlite3.Row
    try:
        images = _images(conn)
        cats = categories(conn, options.vocabulary)
        category_ids = {c["name"]: c["id"] for c in cats}
        by_image = {image["shardlens_image_id"]: image for image in images}
        annotations, seen = [], set()
        rows = conn.execute(
            "SELECT image_id, region_id, bbox, score, machine_label, final_label, review_status FROM final_annotations "
            "WHERE item = 'region' ORDER BY image_id, region_id"
        ).fetchall()
        rows.sort(key=lambda r: (by_image[r["image_id"]]["id"] if r["image_id"] in by_image else 0, r["region_id"]))
        for row in rows:
            image = by_image.get(row["image_id"])
            label = _label(row, options.labels)
            key = f"{row['image_id']}/region/{row['region_id']}"
            if image is None or label is None or key in seen:  # seen: a copy of the image in another shard
                continue
            seen.add(key)
            ann = _annotation(len(annotations) + 1, image, json.loads(row["bbox"]), row["score"], key, row, options.labels)
            if label not in category_ids:  # a blank reviewed label: kept, under its own category
                category_ids[label] = len(cats) + 1
                cats.append({"id": category_ids[label], "name": label, "supercategory": "object"})
            ann["category_id"] = category_ids[label]
            ann["region_id"] = row["region_id"]
            annotations.append(ann)
        return {"info": _info(conn, options, "object detection"), "licenses": [], "images": images, "annotations": annotations, "categories": cats}
    finally:
        conn.close()


def coco_text(db_path: str | Path, options: CocoOptions) -> dict:
    """The OCR lines as a COCO-Text-style document: ``utf8_string`` is the line's text (the
    reviewed transcription under ``final``/``reviewed``), ``legibility`` is ``legible`` (OCR keeps
    only lines it read), ``language`` the ISO 639-1 guess where one was safe (absent otherwise),
    ``score`` the recogniser's confidence."""
    conn = connect_readonly(db_path)
    conn.row_factory = sqlite3.Row
    try:
        images = _images(conn)
        by_image = {image["shardlens_image_id"]: image for image in images}
        rows = conn.execute(
            "SELECT f.image_id, f.line_no, f.bbox, f.score, f.machine_label, f.final_label, f.review_status, "
            "(SELECT o.language FROM ocr_lines o WHERE o.image_id = f.image_id AND o.line_no = f.line_no LIMIT 1) AS language "
            "FROM final_annotations f WHERE f.item = 'text'"
        ).fetchall()
        rows.sort(key=lambda r: (by_image[r["image_id"]]["id"] if r["image_id"] in by_image else 0, r["line_no"]))
        annotations, seen = [], set()
        for row in rows:
            image = by_image.get(row["image_id"])
            text = _label(row, options.labels)
            key = f"{row['image_id']}/line/{row['line_no']}"
            if image is None or text is None or key in seen:
                continue
            seen.add(key)
            ann = _annotation(len(annotations) + 1, image, json.loads(row["bbox"]), row["score"], key, row, options.labels)
            ann.update(category_id=TEXT_CATEGORY["id"], line_no=row["line_no"], utf8_string=text, legibility="legible")
            if row["language"]:
                ann["language"] = row["language"]
            annotations.append(ann)
        return {"info": _info(conn, options, "text lines (COCO-Text style)"), "licenses": [], "images": images, "annotations": annotations, "categories": [TEXT_CATEGORY]}
    finally:
        conn.close()


def write_coco(db_path: str | Path, out_dir: str | Path, options: CocoOptions, stem: str = "annotations") -> dict[str, Path]:
    """Write ``{stem}.coco.json`` and ``{stem}.coco_text.json`` atomically; return their paths."""
    out_dir = Path(out_dir)
    paths = {"coco": out_dir / f"{stem}.coco.json", "coco_text": out_dir / f"{stem}.coco_text.json"}
    for kind, document in (("coco", coco_detection(db_path, options)), ("coco_text", coco_text(db_path, options))):
        with atomic_open(paths[kind], "w") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=1)
    return paths
