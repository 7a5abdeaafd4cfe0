"""Annotation exports for people and tools: CSV (the review sheet), JSON, Parquet and Label Studio
pre-annotations. Every export reads the catalog's ``final_annotations`` view, so a reviewed label
shows over the machine label as soon as it is recorded."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from .atomic import atomic_open, atomic_path
from .catalog import connect_readonly
from .spreadsheet import csv_cell

COLUMNS = (
    "path", "image_id", "item", "region_id", "line_no", "bbox", "text", "machine_label", "cluster_id",
    "confidence", "score", "ocr_text", "final_label", "review_label", "review_status", "reviewer", "reviewed_at",
)  # fmt: skip

ROWS_SQL = """
SELECT i.path, f.image_id, f.item, f.region_id, f.line_no, f.bbox, f.text, f.machine_label, f.cluster_id,
       f.confidence, f.score,
       CASE WHEN f.item = 'region' THEN (
            SELECT group_concat(text, ' | ') FROM (
                SELECT o.text FROM ocr_lines o
                WHERE o.image_id = f.image_id AND o.region_id = f.region_id ORDER BY o.line_no))
            ELSE f.text END AS ocr_text,
       f.final_label, f.review_label, f.review_status, f.reviewer, f.reviewed_at
FROM final_annotations f JOIN images i ON i.image_id = f.image_id
UNION ALL
SELECT i.path, i.image_id, 'image', NULL, NULL, NULL, NULL, NULL, -1, NULL, NULL, NULL,
       v.label, v.label, v.status, v.reviewer, v.reviewed_at
FROM images i LEFT JOIN reviews v ON v.item_key = i.image_id || '/image'
WHERE i.status = 'ok'
  AND NOT EXISTS (SELECT 1 FROM regions r WHERE r.image_id = i.image_id)
  AND NOT EXISTS (SELECT 1 FROM ocr_lines o WHERE o.image_id = i.image_id)
ORDER BY 1, 3, 4, 5
"""


def annotation_rows(db_path: str | Path) -> Iterator[dict]:
    """One dict per region, OCR line, and image with neither, ordered by path."""
    conn = connect_readonly(db_path)
    try:
        cursor = conn.execute(ROWS_SQL)
        while batch := cursor.fetchmany(5000):
            for row in batch:
                record = dict(zip(COLUMNS, row))
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


def write_json(rows: list[dict], target: Path) -> None:
    payload = [{**row, "bbox": json.loads(row["bbox"]) if row["bbox"] else None} for row in rows]
    with atomic_open(target, "w") as handle:
        handle.write(json.dumps(payload, ensure_ascii=False, indent=1))


def write_parquet(rows: list[dict], target: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("path", pa.string()), ("image_id", pa.string()), ("item", pa.string()), ("region_id", pa.int64()),
            ("line_no", pa.int64()), ("bbox", pa.list_(pa.float64())), ("text", pa.string()),
            ("machine_label", pa.string()), ("cluster_id", pa.int64()), ("confidence", pa.float64()),
            ("score", pa.float64()), ("ocr_text", pa.string()), ("final_label", pa.string()),
            ("review_label", pa.string()), ("review_status", pa.string()), ("reviewer", pa.string()),
            ("reviewed_at", pa.string()),
        ]
    )  # fmt: skip
    columns = {name: [] for name in COLUMNS}
    for row in rows:
        for name in COLUMNS:
            value = row[name]
            columns[name].append(json.loads(value) if name == "bbox" and value else value)
    with atomic_path(target) as tmp:
        pq.write_table(pa.table(columns, schema=schema), tmp)


def image_url(prefix: str, path: str) -> str:
    """The URL of an image for a tool that reads images over HTTP: ``prefix`` (Label Studio's
    local-files endpoint ``/data/local-files/?d=``, or a server's base URL) and the path
    relative to the images root, percent-encoded so that spaces, ``#``, ``?``, ``&``, ``%`` and
    non-ASCII names arrive intact (only ``/`` stays as it is)."""
    return prefix + quote(path, safe="/")


def label_studio_tasks(db_path: str | Path, image_url_prefix: str = "/data/local-files/?d=") -> list[dict]:
    """Label Studio tasks with pre-annotations: regions as rectangles (percent of the image) with
    their final label, OCR lines as rectangles with their transcription."""
    conn = connect_readonly(db_path)
    conn.row_factory = sqlite3.Row
    try:
        versions = dict(conn.execute("SELECT image_id, detector_version FROM regions GROUP BY image_id").fetchall())
        tasks = []
        for image in conn.execute("SELECT image_id, path, width, height FROM images WHERE status = 'ok' ORDER BY path"):
            width, height = image["width"], image["height"]
            results, scores = [], []
            items = conn.execute(
                "SELECT item, region_id, line_no, bbox, text, final_label, score FROM final_annotations WHERE image_id = ? ORDER BY item, region_id, line_no",
                (image["image_id"],),
            ).fetchall()
            for n, item in enumerate(items):
                x0, y0, x1, y1 = json.loads(item["bbox"])
                value = {
                    "x": 100.0 * x0 / width, "y": 100.0 * y0 / height,
                    "width": 100.0 * (x1 - x0) / width, "height": 100.0 * (y1 - y0) / height, "rotation": 0,
                }  # fmt: skip
                common = {"id": f"r{n}", "from_name": "label", "to_name": "image", "original_width": width, "original_height": height, "image_rotation": 0, "score": item["score"]}
                if item["item"] == "region":
                    if item["final_label"] is None:
                        continue
                    results.append({**common, "type": "rectanglelabels", "value": {**value, "rectanglelabels": [item["final_label"]]}})
                else:
                    results.append({**common, "from_name": "transcription", "type": "textarea", "value": {**value, "text": [item["text"]]}})
                scores.append(item["score"] or 0.0)
            tasks.append(
                {
                    "data": {"image": image_url(image_url_prefix, image["path"]), "image_id": image["image_id"]},
                    "predictions": [
                        {
                            "model_version": versions.get(image["image_id"], "shardlens"),
                            "score": round(sum(scores) / len(scores), 4) if scores else 0.0,
                            "result": results,
                        }
                    ],
                }
            )
        return tasks
    finally:
        conn.close()


def export_all(db_path: str | Path, out_dir: str | Path, stem: str = "annotations") -> dict[str, Path]:
    """Write CSV, JSON, Parquet and the Label Studio tasks; return their paths."""
    out_dir = Path(out_dir)
    rows = list(annotation_rows(db_path))
    paths = {
        "csv": out_dir / f"{stem}.csv",
        "json": out_dir / f"{stem}.json",
        "parquet": out_dir / f"{stem}.parquet",
        "labelstudio": out_dir / "labelstudio_tasks.json",
    }
    write_csv(rows, paths["csv"])
    write_json(rows, paths["json"])
    write_parquet(rows, paths["parquet"])
    with atomic_open(paths["labelstudio"], "w") as handle:
        handle.write(json.dumps(label_studio_tasks(db_path), ensure_ascii=False, indent=1))
    return paths


def run_export(db_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """The export rule: all exports plus the job's summary line."""
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="export")
    paths = export_all(db_path, out_dir)
    with open(paths["csv"], encoding="utf-8") as handle:
        summary.records = sum(1 for _ in handle) - 1
    conn = connect_readonly(db_path)
    summary.images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    summary.ok = conn.execute("SELECT COUNT(*) FROM image_labels WHERE final_label IS NOT NULL").fetchone()[0]
    conn.close()
    summary.skipped = summary.images - summary.ok
    summary.finish()
    return paths
