"""Annotation exports for people and tools: CSV (the review sheet), JSON, Parquet, COCO
(``coco.py``) and Label Studio pre-annotations. Every export reads the catalog's
``final_annotations`` view, so a reviewed label shows over the machine label as soon as it is
recorded.

Each row carries its image's ``width`` and ``height`` (pixels of the EXIF-oriented image, the
space of ``bbox``) and ``images_root`` (the absolute folder ``path`` is relative to; empty when
unknown), so boxes can be normalised and images found without the catalog. Parquet and JSON keep
types (review columns are strings, null when empty) and add ``candidates``, a region's label
candidates ``[{label, score, source}]`` best first; a CSV has no types: read it with
``pandas.read_csv(path, dtype=str, keep_default_na=False)``.

Every export streams from a cursor, a chunk of rows at a time: memory does not grow with the
catalog. The Parquet export is a dataset partitioned by shard (``annotations.parquet/
shard=<shard>/part-0.parquet``, Hive layout): a row lives in the partition of the shard that
lists its ``path``, and a run rewrites only the partitions whose rows changed: the catalog counts
the writes that touch each shard's rows (:mod:`shardlens.shard_versions`), so finding them costs
no pass over the rows (docs/adr/0007-partitioned-parquet-export.md).

The Parquet dataset is always written; the whole-file formats are the ones ``export.formats``
names (:data:`FORMATS`, all by default). Each of them is written again in full whenever the
catalog changes, at a cost that grows with the catalog: BENCHMARKS.md has the figures."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import abandoned_temporaries, atomic_open, atomic_path
from .catalog import connect_readonly
from .catalog_rules import image_key_sql, is_first_path_sql
from .export_formats import FORMATS, STEM, check_formats, export_paths  # noqa: F401 (FORMATS: re-exported)
from .json_stream import ArrayWriter
from .label_studio import image_url, label_studio_tasks, write_label_studio  # noqa: F401 (image_url, label_studio_tasks: re-exported)
from .models.mirror import file_sha256
from .run_config import guess_images_root
from .shard_versions import tracked_versions
from .spreadsheet import csv_cell

COLUMNS = (
    "path", "image_id", "item", "region_id", "line_no", "bbox", "width", "height", "text", "machine_label",
    "cluster_id", "confidence", "score", "ocr_text", "final_label", "review_label", "review_status", "reviewer",
    "reviewed_at", "label_source", "propagated_from", "images_root",
)  # fmt: skip
REVIEW_COLUMNS = ("review_label", "review_status", "reviewer", "reviewed_at")
_SELECTED = COLUMNS[:-1]  # what the query returns before the row's shard; images_root is the export's

# One row per region and OCR line (final_annotations) and per decoded image with neither, each with
# the shard whose listing holds its path (the image's first path: copies of an image in other
# shards share it), which is the row's Parquet partition. {where_items} and {where_images} narrow
# the rows to some images (_image_rows_sql).
_ROWS_SQL = f"""
SELECT i.path, f.image_id, f.item, f.region_id, f.line_no, f.bbox, i.width, i.height, f.text, f.machine_label, f.cluster_id,
       f.confidence, f.score,
       CASE WHEN f.item = 'region' THEN (
            SELECT group_concat(text, ' | ') FROM (
                SELECT o.text FROM ocr_lines o
                WHERE o.image_id = f.image_id AND o.region_id = f.region_id ORDER BY o.line_no))
            ELSE f.text END AS ocr_text,
       f.final_label, f.review_label, f.review_status, f.reviewer, f.reviewed_at, f.label_source, f.propagated_from, p.shard
FROM final_annotations f JOIN images i ON i.image_id = f.image_id JOIN paths p ON p.path = i.path
WHERE 1 {{where_items}}
UNION ALL
SELECT i.path, i.image_id, 'image', NULL, NULL, NULL, i.width, i.height, NULL, NULL, -1, NULL, NULL, NULL,
       v.label, v.label, v.status, v.reviewer, v.reviewed_at, CASE WHEN v.status IS NULL THEN 'machine' ELSE 'review' END, NULL, p.shard
FROM images i JOIN paths p ON p.path = i.path LEFT JOIN reviews v ON v.item_key = {image_key_sql("i")}
WHERE i.status = 'ok'
  AND NOT EXISTS (SELECT 1 FROM regions r WHERE r.image_id = i.image_id)
  AND NOT EXISTS (SELECT 1 FROM ocr_lines o WHERE o.image_id = i.image_id) {{where_images}}
ORDER BY {{order}}
"""
ROWS_SQL = _ROWS_SQL.format(where_items="", where_images="", order="1, 3, 4, 5")  # every row, by path: the CSV and JSON

# The images whose rows a shard's partition holds (their first path is in the shard), by path.
SHARD_IMAGES_SQL = f"""
SELECT p.image_id FROM paths p
WHERE p.shard = ? AND {is_first_path_sql("p")}
ORDER BY p.path
"""
_SHARD_IMAGES_CHUNK = 300  # image ids bound per query (three times: both arms, and the images view)


def _image_rows_sql(count: int) -> str:
    """The rows of ``count`` given images, by path. The ids are bound as a list: SQLite pushes a
    list (not a subquery) into the views, so each arm and the images view are searched by index
    instead of scanned whole."""
    marks = ", ".join("?" * count)
    return _ROWS_SQL.format(
        where_items=f"AND f.image_id IN ({marks}) AND i.image_id IN ({marks})", where_images=f"AND i.image_id IN ({marks})", order="1, 3, 4, 5"
    )


# The label candidates of the regions of some images (?1, a JSON list of image ids), through the
# primary key of region_labels (shard, image_id, ...): each region takes its first shard's list.
CANDIDATES_SQL = """
SELECT l.image_id, l.region_id, l.shard, l.label, l.score, l.source
FROM (SELECT DISTINCT r.shard, r.image_id FROM json_each(?1) j JOIN regions r ON r.image_id = j.value) s
JOIN region_labels l ON l.shard = s.shard AND l.image_id = s.image_id
ORDER BY l.image_id, l.region_id, l.shard, l.rank
"""
_CHUNK = 5000  # rows fetched (and Parquet rows converted) at a time

PARTITION_FILE = "part-0.parquet"
STATE_FILE = "_partitions.json"  # in the dataset folder; readers skip names starting with '_'
DATASET_LAYOUT = 1  # bump when the partition files are written differently from the same rows


def _candidates(conn: sqlite3.Connection, image_ids: set[str]) -> dict[tuple[str, int], list[dict]]:
    """``(image_id, region_id) -> [{label, score, source}]`` best first, for ``image_ids``."""
    out: dict[tuple[str, int], list[dict]] = {}
    shard_of: dict[tuple[str, int], str] = {}
    if not image_ids:
        return out
    for image_id, region_id, shard, label, score, source in conn.execute(CANDIDATES_SQL, (json.dumps(sorted(image_ids)),)):
        key = (image_id, region_id)
        if shard_of.setdefault(key, shard) == shard:  # one shard's copy of an image only
            out.setdefault(key, []).append({"label": label, "score": score, "source": source})
    return out


def _records(conn: sqlite3.Connection, images_root: str | None, shards: Iterable[str] | None = None) -> Iterator[tuple[str, dict, list[dict] | None]]:
    """``(shard, row, candidates)`` for every row (by path), or for the rows of ``shards`` (by
    shard, then path): ``row`` has :data:`COLUMNS`; ``candidates`` is a region's label candidates
    (None for other items). One chunk of rows in memory at a time."""
    if shards is None:
        batches = _fetch_batches(conn.execute(ROWS_SQL))
    else:
        batches = _shard_batches(conn, sorted(shards))
    for batch in batches:
        candidates = _candidates(conn, {row[1] for row in batch if row[2] == "region"})
        for row in batch:
            record = dict(zip(_SELECTED, row))
            record["images_root"] = images_root
            if record["confidence"] is not None:
                record["confidence"] = round(record["confidence"], 4)
            if record["score"] is not None:
                record["score"] = round(record["score"], 4)
            found = candidates.get((record["image_id"], record["region_id"]), []) if record["item"] == "region" else None
            yield row[len(_SELECTED)], record, found


def _fetch_batches(cursor: sqlite3.Cursor) -> Iterator[list]:
    while batch := cursor.fetchmany(_CHUNK):
        yield batch


def _shard_batches(conn: sqlite3.Connection, shards: list[str]) -> Iterator[list]:
    """The rows of each shard in turn, by path: its images a chunk at a time (by path), each
    chunk's rows by path."""
    for shard in shards:
        images = [row[0] for row in conn.execute(SHARD_IMAGES_SQL, (shard,))]
        for start in range(0, len(images), _SHARD_IMAGES_CHUNK):
            chunk = images[start : start + _SHARD_IMAGES_CHUNK]
            yield conn.execute(_image_rows_sql(len(chunk)), chunk * 3).fetchall()


def _csv_cells(row: dict) -> dict:
    return {k: ("" if v is None else csv_cell(v)) for k, v in row.items()}


def write_csv(target: Path, rows: Iterable[dict]) -> None:
    with atomic_open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(_csv_cells(row))


def _typed(row: dict, candidates: list[dict] | None) -> dict:
    """A row as JSON and Parquet hold it: ``bbox`` a list of numbers, plus ``candidates``."""
    return {**row, "bbox": json.loads(row["bbox"]) if row["bbox"] else None, "candidates": candidates}


def _write_tables(conn: sqlite3.Connection, images_root: str | None, csv_path: Path | None, json_path: Path | None) -> int:
    """The CSV and/or the JSON export in one pass over the rows; returns the rows written."""
    rows = 0
    with contextlib.ExitStack() as stack:
        sheet = array = None
        if csv_path is not None:
            sheet = csv.DictWriter(stack.enter_context(atomic_open(csv_path, "w", newline="")), fieldnames=COLUMNS)
            sheet.writeheader()
        if json_path is not None:
            array = ArrayWriter(stack.enter_context(atomic_open(json_path, "w")))
        for _, row, candidates in _records(conn, images_root):
            if sheet is not None:
                sheet.writerow(_csv_cells(row))
            if array is not None:
                array.add(_typed(row, candidates))
            rows += 1
        if array is not None:
            array.close()
    return rows


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
            ("reviewer", pa.string()), ("reviewed_at", pa.string()), ("label_source", pa.string()),
            ("propagated_from", pa.string()), ("images_root", pa.string()),
            ("candidates", pa.list_(candidate)),
        ]
    )  # fmt: skip


def partition_file(dataset: Path, shard: str) -> Path:
    """Where the rows of ``shard`` live in the Parquet dataset (Hive layout: ``shard=<shard>``)."""
    return Path(dataset) / f"shard={shard}" / PARTITION_FILE


def parquet_dataset(path: str | Path):
    """The Parquet export as a ``pyarrow.dataset.Dataset``: the columns of
    :func:`parquet_schema` plus ``shard``, read as the string it is (``"0007"``; Hive type
    inference, what a plain ``pyarrow.dataset.dataset(path, partitioning="hive")`` or
    ``pandas.read_parquet(path)`` does, makes it the integer 7)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    key = pa.schema([("shard", pa.string())])
    return ds.dataset(Path(path), format="parquet", schema=parquet_schema().append(key.field("shard")), partitioning=ds.partitioning(key, flavor="hive"))


def _layout() -> str:
    """What the partition files' bytes depend on besides their rows: a state recorded under
    another layout (another schema, another writer) is not trusted, so every partition is
    rewritten."""
    return hashlib.sha256(f"{DATASET_LAYOUT}\0{parquet_schema()}".encode()).hexdigest()[:16]


@dataclass
class DatasetUpdate:
    """What a run did to the Parquet dataset: partitions (re)written, kept as they were, deleted
    (their shard has no rows any more), and the state of every partition now."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    partitions: dict[str, dict] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(entry["rows"] for entry in self.partitions.values())


def _read_state(dataset: Path) -> dict:
    """What the last run recorded: layout, the catalog's epoch, the images folder and the
    partitions (shard -> file, rows, version, bytes, mtime_ns); empty when the state is missing,
    unreadable or of another layout."""
    try:
        state = json.loads((dataset / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or state.get("layout") != _layout() or not isinstance(state.get("partitions"), dict):
        return {}
    return state


def _unchanged(dataset: Path, shard: str, entry, version: int | None) -> bool:
    """The partition holds the rows of the shard's ``version``: its state entry says so, and the
    file is the one that entry recorded (size and mtime_ns; a file written after the state, by a
    run killed before it recorded it, or changed by hand, is not). A shard without rows has no
    file."""
    if not isinstance(entry, dict) or version is None or entry.get("version") != version:
        return False
    if not entry.get("rows"):
        return not partition_file(dataset, shard).exists()
    try:
        stat = partition_file(dataset, shard).stat()
    except OSError:
        return False
    return stat.st_size == entry.get("bytes") and stat.st_mtime_ns == entry.get("mtime_ns")


_SHARD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _write_partitions(conn: sqlite3.Connection, images_root: str | None, dataset: Path, shards: list[str]) -> Iterator[tuple[str, int]]:
    """Write the partition of each of ``shards`` (its rows in path order, converted a chunk at a
    time) to a temporary name renamed over ``part-0.parquet``; yield (shard, rows) as each lands."""
    if not shards:
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema()
    for shard, group in itertools.groupby(_records(conn, images_root, shards), key=lambda r: r[0]):
        count = 0
        with atomic_path(partition_file(dataset, shard)) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            while chunk := list(itertools.islice(group, _CHUNK)):
                columns: dict[str, list] = {name: [] for name in schema.names}
                for _, row, candidates in chunk:
                    for name, value in _typed(row, candidates).items():
                        columns[name].append(value)
                writer.write_table(pa.table(columns, schema=schema))
                count += len(chunk)
        yield shard, count


def write_parquet_dataset(conn: sqlite3.Connection, images_root: str | None, dataset: Path) -> DatasetUpdate:
    """Bring the Parquet dataset at ``dataset`` up to date with the catalog (inside the caller's
    read transaction). A partition is kept when the state records the catalog's epoch, the same
    images folder and the shard's current version (:mod:`shardlens.shard_versions`), and its
    file is the one recorded; the others are rewritten, each atomically; partitions of shards
    without rows are deleted; the state is written last. A catalog that tracks no versions has
    every partition rewritten."""
    dataset = Path(dataset)
    if dataset.is_file() or dataset.is_symlink():
        dataset.unlink()  # the single file earlier versions wrote
    dataset.mkdir(parents=True, exist_ok=True)
    epoch, versions = tracked_versions(conn)
    state = _read_state(dataset)
    trusted = epoch is not None and state.get("epoch") == epoch and state.get("images_root") == images_root
    known = {**{s: {"rows": 0, "version": v} for s, v in state.get("empty", {}).items()}, **state["partitions"]} if trusted else {}
    if epoch is None:
        shards = {row[0] for row in conn.execute("SELECT DISTINCT shard FROM paths")}
    else:
        shards = set(versions) | set(known)
    update = DatasetUpdate()
    for shard in sorted(shards):
        if _unchanged(dataset, shard, known.get(shard), versions.get(shard)):
            update.unchanged.append(shard)
            if known[shard].get("rows"):
                update.partitions[shard] = known[shard]
        else:
            if not _SHARD_NAME.match(shard):
                raise ValueError(f"shard {shard!r}: not a name a partition folder can carry (letters, digits, '_', '.', '-')")
            update.written.append(shard)
    empty = {shard: {"file": None, "rows": 0, "version": versions.get(shard)} for shard in update.written}
    for shard, rows in _write_partitions(conn, images_root, dataset, update.written):
        path = partition_file(dataset, shard)
        stat = path.stat()
        del empty[shard]
        update.partitions[shard] = {
            "file": path.relative_to(dataset).as_posix(), "rows": rows, "version": versions.get(shard),
            "sha256": file_sha256(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        }  # fmt: skip
    update.written = sorted(set(update.written) - set(empty))  # shards with rows written
    for folder in sorted(dataset.glob("shard=*")):
        shard = folder.name.removeprefix("shard=")
        if shard not in update.partitions and folder.is_dir():
            shutil.rmtree(folder)
            update.removed.append(shard)
        elif folder.is_dir():
            for leftover in abandoned_temporaries(folder / PARTITION_FILE):
                leftover.unlink(missing_ok=True)
    # shards without rows (every image an error, or exported with a copy elsewhere), by version
    empty_versions = {s: e["version"] for s, e in empty.items() if e["version"] is not None}
    empty_versions.update({s: known[s]["version"] for s in update.unchanged if s not in update.partitions})
    state = {
        "layout": _layout(), "epoch": epoch, "images_root": images_root,
        "partitions": dict(sorted(update.partitions.items())), "empty": dict(sorted(empty_versions.items())),
    }  # fmt: skip
    with atomic_open(dataset / STATE_FILE, "w") as handle:
        handle.write(json.dumps(state, indent=1) + "\n")
    return update


def _write_dataset_manifest(target: Path, dataset: Path, update: DatasetUpdate) -> None:
    """The Parquet export's declared output (what the workflow tracks; the dataset folder itself
    is not a Snakemake output, docs/adr/0006): the dataset's partitions, from the catalog alone."""
    manifest = {
        "dataset": dataset.name,
        "format": "parquet",
        "partitioning": {"flavor": "hive", "field": "shard", "type": "string"},
        "rows": update.rows,
        "partitions": [
            {"shard": shard, "file": f"{dataset.name}/{entry['file']}", "rows": entry["rows"], "sha256": entry["sha256"]}
            for shard, entry in sorted(update.partitions.items())
        ],
    }
    with atomic_open(target, "w") as handle:
        handle.write(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")


def images_root_of(db_path: str | Path, config: dict | None, images_root: str | Path | None) -> str | None:
    """The images folder as an absolute posix path: ``images_root`` when given, else ``images:`` of
    the workflow ``config`` where that folder exists (relative to the working directory, as
    Snakemake reads it), else the folder of the run that built the catalog (``images:`` of
    ``results/../config/config.yaml``, as ``shardlens review`` finds it); None when unknown."""
    if images_root is None and config is not None and Path(config["images"]).expanduser().is_dir():
        images_root = config["images"]
    if images_root is None:
        images_root = guess_images_root(db_path)
    return Path(images_root).expanduser().resolve().as_posix() if images_root is not None else None


@dataclass
class ExportResult:
    paths: dict[str, Path]
    rows: int
    dataset: DatasetUpdate
    seconds: dict[str, float] = field(default_factory=dict)  # per part: tables (CSV + JSON), parquet, coco, labelstudio


def export_catalog(
    db_path: str | Path,
    out_dir: str | Path,
    stem: str = STEM,
    config: dict | None = None,
    images_root: str | Path | None = None,
    coco_labels: str | None = None,
    formats: Iterable[str] | None = None,
) -> ExportResult:
    """Write the Parquet dataset (and its manifest) and the whole-file formats of ``formats``
    (default: ``export.formats`` of ``config``; :data:`FORMATS`): CSV, JSON, COCO, COCO-Text and
    the Label Studio tasks and config, each streamed from the catalog. ``config`` is the
    validated workflow config (None: all defaults, and the images folder of the run that built
    the catalog); ``images_root`` and ``coco_labels`` override it. CSV, JSON and Parquet read one
    snapshot of the catalog (one read transaction)."""
    from .coco import CocoOptions, write_coco
    from .ontology import label_space

    root = images_root_of(db_path, config, images_root)
    if config is None:
        from .config import load_config

        config = load_config()
    chosen = check_formats(config["export"]["formats"] if formats is None else formats)
    out_dir = Path(out_dir)
    paths = {name: path for name, path in export_paths(out_dir, stem).items() if name in chosen or name.startswith("parquet")}
    seconds, start = {}, time.perf_counter()

    def lap(part: str) -> None:
        nonlocal start
        now = time.perf_counter()
        seconds[part], start = now - start, now

    conn = connect_readonly(db_path)
    try:
        conn.execute("BEGIN")  # one snapshot for both passes (WAL readers keep theirs until the end)
        rows = None
        if "csv" in chosen or "json" in chosen:
            rows = _write_tables(conn, root, paths.get("csv"), paths.get("json"))
            lap("tables")
        update = write_parquet_dataset(conn, root, paths["parquet"])
        conn.execute("COMMIT")
    finally:
        conn.close()
    _write_dataset_manifest(paths["parquet_manifest"], paths["parquet"], update)
    lap("parquet")
    coco_kinds = [kind for kind in ("coco", "coco_text") if kind in chosen]
    if coco_kinds:
        options = CocoOptions.from_config(config, images_root=root, labels=coco_labels)
        paths.update(write_coco(db_path, out_dir, options, stem=stem, kinds=coco_kinds))
        lap("coco")
    if "labelstudio" in chosen:
        paths.update(write_label_studio(db_path, out_dir, config["export"]["label_studio_url_prefix"], label_space(config)))
        lap("labelstudio")
    return ExportResult(paths=paths, rows=update.rows if rows is None else rows, dataset=update, seconds=seconds)


def export_all(
    db_path: str | Path,
    out_dir: str | Path,
    stem: str = STEM,
    config: dict | None = None,
    images_root: str | Path | None = None,
    coco_labels: str | None = None,
) -> dict[str, Path]:
    """:func:`export_catalog`, returning the paths written."""
    return export_catalog(db_path, out_dir, stem, config=config, images_root=images_root, coco_labels=coco_labels).paths


def run_export(db_path: str | Path, out_dir: str | Path, config: dict | None = None) -> dict[str, Path]:
    """The export rule: all exports plus the job's summary line."""
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="export")
    result = export_catalog(db_path, out_dir, config=config)
    summary.records = result.rows
    conn = connect_readonly(db_path)
    # counted through paths' index: the images and image_labels views group every image (~20 s
    # at a million images), more than a re-run's whole export
    summary.images = summary.ok = conn.execute("SELECT COUNT(DISTINCT image_id) FROM paths").fetchone()[0]
    conn.close()
    summary.extra = {
        "parquet_partitions_written": len(result.dataset.written),
        "parquet_partitions_unchanged": len(result.dataset.unchanged),
        "parquet_partitions_removed": len(result.dataset.removed),
    }
    summary.finish()
    return result.paths
