"""COCO exports of the catalog, for the tools that load COCO first (FiftyOne, CVAT, Detectron2,
MMDetection, pycocotools):

- ``annotations.coco.json``: COCO object detection. Every image of the catalog that decoded
  (``status`` ok), also those without a region; one annotation per region; the categories are
  the ontology's classes (or the detector's vocabulary) plus every label found on a region or
  given to one in a review.
- ``annotations.coco_text.json``: the OCR lines in the same layout with COCO-Text's fields
  (``utf8_string``, ``legibility``, ``language``), one category ``text``.

Labels come from the catalog's ``final_annotations`` view (one place for "a review wins").
``labels`` chooses which: ``final`` (a reviewed label, else a propagated one, over the machine
label), ``machine`` (what the detector and OCR found, reviews ignored) or ``reviewed`` (reviewed
items only). A region or line rejected in review is a false detection: it is left out of
``final`` and ``reviewed``, never exported as a positive box; ``machine`` keeps it, because that
file is what the machine said (the detections to score against a reviewed export with
``COCOeval``).

Ids are stable for a given catalog: images are numbered 1.. in path order, annotations 1.. in
image and region (line) order, categories 1.. with the ontology's classes (or the vocabulary) first in their own order
and the other labels after it by name. The durable keys across catalogs are the shardlens ids each
entry carries: ``shardlens_image_id`` (sha256 of the file) on images and ``item_key``
(``{image_id}/region/{n}``, as in the review store) on annotations.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_open
from .catalog import connect_readonly, fetch_rows
from .catalog_rules import item_key
from .export_formats import STEM, export_paths
from .json_stream import ObjectWriter

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


def _images(conn: sqlite3.Connection) -> Iterator[dict]:
    """Every decoded image, numbered 1.. in path order, streamed."""
    rows = conn.execute("SELECT image_id, path, width, height FROM images WHERE status = 'ok' ORDER BY path")
    for n, (image_id, path, width, height) in enumerate(fetch_rows(rows), 1):
        yield {"id": n, "file_name": path, "width": width, "height": height, "shardlens_image_id": image_id}


def _numbered(conn: sqlite3.Connection, rows: Iterator[sqlite3.Row]) -> Iterator[tuple[int, sqlite3.Row]]:
    """Each row (of a query ordered by ``path``, decoded images only) with its image's COCO id,
    walking the images in the same order beside it: no table of every image in memory."""
    images = enumerate(fetch_rows(conn.execute("SELECT path FROM images WHERE status = 'ok' ORDER BY path")), 1)
    n, current = 0, None
    for row in rows:
        while current != row["path"]:
            n, (current,) = next(images)
        yield n, row


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


def _annotation(n: int, image_id: int, bbox: list[float], score: float | None, key: str, row: sqlite3.Row, mode: str) -> dict:
    """The fields a region and a text line share; ``label_source`` says whether a person's review,
    a propagated review (``propagated_from`` follows) or the machine gave the label
    (``review_status`` follows for a reviewed item)."""
    box = xywh(bbox)
    ann = {
        "id": n,
        "image_id": image_id,
        "bbox": box,
        "area": round(box[2] * box[3], 4),
        "iscrowd": 0,
        "score": score,
        "item_key": key,
        "label_source": "machine" if mode == "machine" else row["label_source"],
    }
    if ann["label_source"] == "review":
        ann["review_status"] = row["review_status"]
    elif ann["label_source"] == "propagated":
        ann["propagated_from"] = row["propagated_from"]
    return ann


# Items of decoded images in COCO order: image (path order, as the images are numbered), then region
# or line. A copy of an image in another shard repeats its items right after them (same path).
REGION_ROWS_SQL = """
SELECT i.path, f.image_id, f.region_id, f.bbox, f.score, f.machine_label, f.final_label, f.review_status, f.label_source, f.propagated_from
FROM final_annotations f JOIN images i ON i.image_id = f.image_id
WHERE f.item = 'region' AND i.status = 'ok'
ORDER BY i.path, f.region_id
"""
LINE_ROWS_SQL = """
SELECT i.path, f.image_id, f.line_no, f.bbox, f.score, f.machine_label, f.final_label, f.review_status, f.label_source, f.propagated_from,
       (SELECT o.language FROM ocr_lines o WHERE o.image_id = f.image_id AND o.line_no = f.line_no LIMIT 1) AS language
FROM final_annotations f JOIN images i ON i.image_id = f.image_id
WHERE f.item = 'text' AND i.status = 'ok'
ORDER BY i.path, f.line_no
"""


@dataclass
class _Document:
    """A COCO document as streams: ``images`` and ``annotations`` are consumed in that order, once;
    ``categories`` is complete when ``annotations`` is exhausted (a blank reviewed label adds
    its own category on the way)."""

    info: dict
    images: Iterator[dict]
    annotations: Iterator[dict]
    categories: list[dict]

    def as_dict(self) -> dict:
        images, annotations = list(self.images), list(self.annotations)
        return {"info": self.info, "licenses": [], "images": images, "annotations": annotations, "categories": self.categories}

    def write(self, handle) -> None:
        """The document as ``json.dump(self.as_dict(), handle, ensure_ascii=False, indent=1)`` writes
        it, holding one chunk of rows at a time."""
        document = ObjectWriter(handle)
        document.value("info", self.info)
        document.value("licenses", [])
        document.array("images", self.images)
        document.array("annotations", self.annotations)
        document.value("categories", self.categories)
        document.close()


def _region_annotations(conn: sqlite3.Connection, options: CocoOptions, cats: list[dict]) -> Iterator[dict]:
    category_ids = {c["name"]: c["id"] for c in cats}
    last, count = None, 0
    for image_id, row in _numbered(conn, fetch_rows(conn.execute(REGION_ROWS_SQL))):
        label = _label(row, options.labels)
        key = item_key(row["image_id"], row["region_id"], None)
        if label is None or key == last:  # key == last: the region of a copy of the image in another shard
            continue
        last, count = key, count + 1
        ann = _annotation(count, image_id, json.loads(row["bbox"]), row["score"], key, row, options.labels)
        if label not in category_ids:  # a blank reviewed label: kept, under its own category
            category_ids[label] = len(cats) + 1
            cats.append({"id": category_ids[label], "name": label, "supercategory": "object"})
        ann["category_id"] = category_ids[label]
        ann["region_id"] = row["region_id"]
        yield ann


def _line_annotations(conn: sqlite3.Connection, options: CocoOptions) -> Iterator[dict]:
    last, count = None, 0
    for image_id, row in _numbered(conn, fetch_rows(conn.execute(LINE_ROWS_SQL))):
        text = _label(row, options.labels)
        key = item_key(row["image_id"], None, row["line_no"])
        if text is None or key == last:
            continue
        last, count = key, count + 1
        ann = _annotation(count, image_id, json.loads(row["bbox"]), row["score"], key, row, options.labels)
        ann.update(category_id=TEXT_CATEGORY["id"], line_no=row["line_no"], utf8_string=text, legibility="legible")
        if row["language"]:
            ann["language"] = row["language"]
        yield ann


def _detection_document(conn: sqlite3.Connection, options: CocoOptions) -> _Document:
    cats = categories(conn, options.vocabulary)
    info = _info(conn, options, "object detection")
    return _Document(info, _images(conn), _region_annotations(conn, options, cats), cats)


def _text_document(conn: sqlite3.Connection, options: CocoOptions) -> _Document:
    info = _info(conn, options, "text lines (COCO-Text style)")
    return _Document(info, _images(conn), _line_annotations(conn, options), [TEXT_CATEGORY])


def _open(db_path: str | Path) -> sqlite3.Connection:
    conn = connect_readonly(db_path)
    conn.row_factory = sqlite3.Row
    return conn


def coco_detection(db_path: str | Path, options: CocoOptions) -> dict:
    """The COCO object-detection document of the catalog, in memory (:func:`write_coco` streams it)."""
    conn = _open(db_path)
    try:
        return _detection_document(conn, options).as_dict()
    finally:
        conn.close()


def coco_text(db_path: str | Path, options: CocoOptions) -> dict:
    """The OCR lines as a COCO-Text-style document, in memory (:func:`write_coco` streams it):
    ``utf8_string`` is the line's text (the reviewed transcription under ``final``/``reviewed``),
    ``legibility`` is ``legible`` (OCR keeps only lines it read), ``language`` the ISO 639-1 guess
    where one was safe (absent otherwise), ``score`` the recogniser's confidence."""
    conn = _open(db_path)
    try:
        return _text_document(conn, options).as_dict()
    finally:
        conn.close()


def write_coco(db_path: str | Path, out_dir: str | Path, options: CocoOptions, stem: str = STEM, kinds=("coco", "coco_text")) -> dict[str, Path]:
    """Write ``{stem}.coco.json`` and ``{stem}.coco_text.json`` (or those of ``kinds``)
    atomically, streamed from the catalog (memory does not grow with the number of images or
    annotations); return their paths."""
    names = export_paths(out_dir, stem, formats=kinds)  # the files' names: shardlens/export_formats.py
    paths = {kind: names[kind] for kind in kinds}
    conn = _open(db_path)
    try:
        for kind, document in (("coco", _detection_document), ("coco_text", _text_document)):
            if kind in paths:
                with atomic_open(paths[kind], "w") as handle:
                    document(conn, options).write(handle)
    finally:
        conn.close()
    return paths
