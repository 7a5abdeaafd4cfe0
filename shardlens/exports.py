"""Annotation exports for people and tools: CSV (the review sheet), JSON, Parquet, COCO
(``coco.py``) and Label Studio pre-annotations. Every export reads the catalog's
``final_annotations`` view, so a reviewed label shows over the machine label as soon as it is
recorded.

Each row carries its image's ``width`` and ``height`` (pixels of the EXIF-oriented image, the
space of ``bbox``) and ``images_root`` (the absolute folder ``path`` is relative to; empty when
unknown), so boxes can be normalised and images found without the catalog. Parquet and JSON keep
types (review columns are strings, null when empty) and add ``candidates``, a region's label
candidates ``[{label, score, source}]`` best first; a CSV has no types: read it with
``pandas.read_csv(path, dtype=str, keep_default_na=False)``."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from .atomic import atomic_open, atomic_path
from .catalog import connect_readonly
from .label_studio import image_url, label_studio_tasks, write_label_studio  # noqa: F401 (image_url, label_studio_tasks: re-exported)
from .spreadsheet import csv_cell

COLUMNS = (
    "path", "image_id", "item", "region_id", "line_no", "bbox", "width", "height", "text", "machine_label",
    "cluster_id", "confidence", "score", "ocr_text", "final_label", "review_label", "review_status", "reviewer",
    "reviewed_at", "images_root",
)  # fmt: skip
REVIEW_COLUMNS = ("review_label", "review_status", "reviewer", "reviewed_at")

ROWS_SQL = """
SELECT i.path, f.image_id, f.item, f.region_id, f.line_no, f.bbox, i.width, i.height, f.text, f.machine_label, f.cluster_id,
       f.confidence, f.score,
       CASE WHEN f.item = 'region' THEN (
            SELECT group_concat(text, ' | ') FROM (
                SELECT o.text FROM ocr_lines o
                WHERE o.image_id = f.image_id AND o.region_id = f.region_id ORDER BY o.line_no))
            ELSE f.text END AS ocr_text,
       f.final_label, f.review_label, f.review_status, f.reviewer, f.reviewed_at
FROM final_annotations f JOIN images i ON i.image_id = f.image_id
UNION ALL
SELECT i.path, i.image_id, 'image', NULL, NULL, NULL, i.width, i.height, NULL, NULL, -1, NULL, NULL, NULL,
       v.label, v.label, v.status, v.reviewer, v.reviewed_at
FROM images i LEFT JOIN reviews v ON v.item_key = i.image_id || '/image'
WHERE i.status = 'ok'
  AND NOT EXISTS (SELECT 1 FROM regions r WHERE r.image_id = i.image_id)
  AND NOT EXISTS (SELECT 1 FROM ocr_lines o WHERE o.image_id = i.image_id)
ORDER BY 1, 3, 4, 5
"""


def annotation_rows(db_path: str | Path, images_root: str | None = None) -> Iterator[dict]:
    """One dict per region, OCR line, and image with neither, ordered by path."""
    conn = connect_readonly(db_path)
    try:
        cursor = conn.execute(ROWS_SQL)
        while batch := cursor.fetchmany(5000):
            for row in batch:
                record = dict(zip(COLUMNS, row))
                record["images_root"] = images_root
                if record["confidence"] is not None:
                    record["confidence"] = round(record["confidence"], 4)
                if record["score"] is not None:
                    record["score"] = round(record["score"], 4)
                yield record
    finally:
        conn.close()


def write_csv(rows: list[dict], target: Path) -> None:
    with atomic_open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else csv_cell(v)) for k, v in row.items()})


def region_candidates(db_path: str | Path) -> dict[tuple[str, int], list[dict]]:
    """Each region's label candidates from the catalog's ``region_labels``, best first:
    ``(image_id, region_id) -> [{label, score, source}]``."""
    conn = connect_readonly(db_path)
    try:
        out: dict[tuple[str, int], list[dict]] = {}
        shard_of: dict[tuple[str, int], str] = {}
        rows = conn.execute("SELECT shard, image_id, region_id, label, score, source FROM region_labels ORDER BY image_id, region_id, shard, rank")
        for shard, image_id, region_id, label, score, source in rows:
            key = (image_id, region_id)
            if shard_of.setdefault(key, shard) == shard:  # one shard's copy of an image only
                out.setdefault(key, []).append({"label": label, "score": score, "source": source})
        return out
    finally:
        conn.close()


def _candidates_of(row: dict, candidates: dict[tuple[str, int], list[dict]]) -> list[dict] | None:
    return candidates.get((row["image_id"], row["region_id"]), []) if row["item"] == "region" else None


def write_json(rows: list[dict], target: Path, candidates: dict[tuple[str, int], list[dict]] | None = None) -> None:
    payload = [
        {**row, "bbox": json.loads(row["bbox"]) if row["bbox"] else None, "candidates": _candidates_of(row, candidates or {})}
        for row in rows
    ]
    with atomic_open(target, "w") as handle:
        handle.write(json.dumps(payload, ensure_ascii=False, indent=1))


def parquet_schema():
    """The Parquet export's columns and types: review columns are strings (null when empty)."""
    import pyarrow as pa

    candidate = pa.struct([("label", pa.string()), ("score", pa.float64()), ("source", pa.string())])
    return pa.schema(
        [
            ("path", pa.string()), ("image_id", pa.string()), ("item", pa.string()), ("region_id", pa.int64()),
            ("line_no", pa.int64()), ("bbox", pa.list_(pa.float64())), ("width", pa.int64()), ("height", pa.int64()),
            ("text", pa.string()), ("machine_label", pa.string()), ("cluster_id", pa.int64()),
            ("confidence", pa.float64()), ("score", pa.float64()), ("ocr_text", pa.string()),
            ("final_label", pa.string()), ("review_label", pa.string()), ("review_status", pa.string()),
            ("reviewer", pa.string()), ("reviewed_at", pa.string()), ("images_root", pa.string()),
            ("candidates", pa.list_(candidate)),
        ]
    )  # fmt: skip


def write_parquet(rows: list[dict], target: Path, candidates: dict[tuple[str, int], list[dict]] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {name: [] for name in (*COLUMNS, "candidates")}
    for row in rows:
        for name in COLUMNS:
            value = row[name]
            columns[name].append(json.loads(value) if name == "bbox" and value else value)
        columns["candidates"].append(_candidates_of(row, candidates or {}))
    with atomic_path(target) as tmp:
        pq.write_table(pa.table(columns, schema=parquet_schema()), tmp)


def images_root_of(db_path: str | Path, config: dict | None, images_root: str | Path | None) -> str | None:
    """The images folder as an absolute posix path: ``images_root`` when given, else ``images:`` of
    the workflow ``config`` where that folder exists (relative to the working directory, as
    Snakemake reads it), else the folder of the run that built the catalog (``images:`` of
    ``results/../config/config.yaml``, as ``shardlens review`` finds it); None when unknown."""
    if images_root is None and config is not None and Path(config["images"]).expanduser().is_dir():
        images_root = config["images"]
    if images_root is None:
        from .dashboard.launch import guess_images_root

        images_root = guess_images_root(db_path)
    return Path(images_root).expanduser().resolve().as_posix() if images_root is not None else None


def export_all(
    db_path: str | Path,
    out_dir: str | Path,
    stem: str = "annotations",
    config: dict | None = None,
    images_root: str | Path | None = None,
    coco_labels: str | None = None,
) -> dict[str, Path]:
    """Write CSV, JSON, Parquet, COCO and the Label Studio tasks and config; return their paths.
    ``config`` is the validated workflow config (None: all defaults, and the images folder of the
    run that built the catalog); ``images_root`` and ``coco_labels`` override it."""
    from .coco import CocoOptions, write_coco
    from .ontology import label_space

    root = images_root_of(db_path, config, images_root)
    if config is None:
        from .config import load_config

        config = load_config()
    out_dir = Path(out_dir)
    rows = list(annotation_rows(db_path, root))
    candidates = region_candidates(db_path)
    paths = {
        "csv": out_dir / f"{stem}.csv",
        "json": out_dir / f"{stem}.json",
        "parquet": out_dir / f"{stem}.parquet",
    }
    write_csv(rows, paths["csv"])
    write_json(rows, paths["json"], candidates)
    write_parquet(rows, paths["parquet"], candidates)
    paths.update(write_coco(db_path, out_dir, CocoOptions.from_config(config, images_root=root, labels=coco_labels), stem=stem))
    paths.update(write_label_studio(db_path, out_dir, config["export"]["label_studio_url_prefix"], label_space(config)))
    return paths


def run_export(db_path: str | Path, out_dir: str | Path, config: dict | None = None) -> dict[str, Path]:
    """The export rule: all exports plus the job's summary line."""
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="export")
    paths = export_all(db_path, out_dir, config=config)
    with open(paths["csv"], encoding="utf-8") as handle:
        summary.records = sum(1 for _ in handle) - 1
    conn = connect_readonly(db_path)
    summary.images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    summary.ok = conn.execute("SELECT COUNT(*) FROM image_labels WHERE final_label IS NOT NULL").fetchone()[0]
    conn.close()
    summary.skipped = summary.images - summary.ok
    summary.finish()
    return paths
