"""Exports at scale: seconds, items/s and peak memory of each export format of a large catalog,
and what a re-run costs after one shard changed (the Parquet dataset rewrites that partition only).

The catalog is generated as bench/catalog_import.py's (`generate_cache`: ~2 regions with 3 label
candidates per image, 2 OCR lines on 30 % of the images) and loaded with
`shardlens.catalog.build_catalog`: `--images` images in shards of `--per-shard`. Each measurement
runs in a fresh process, so its peak RSS (VmHWM: Python, SQLite's page cache, Arrow's buffers)
is its own; "python + imports" is a process that only imports the exporters and pyarrow, the
floor of the lines that write Parquet. The re-runs go through `export_catalog` into the folder
of the first whole export, after the catalog changed as the workflow changes it (a shard's cache
file edited and the catalog updated incrementally; a review recorded).

    python bench/export_scale.py [--images 100000 --per-shard 1000] [--append]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, REPO, add_common_args, command_line, emit, log, wait_for_quiet  # noqa: E402

sys.path.insert(0, str(REPO))

IMAGES_ROOT = "/images"  # what the rows name as their images folder (the images are not needed)


def _peak_mb() -> float:
    """This process's peak RSS. Linux: VmHWM (ru_maxrss keeps the parent's peak across fork and
    exec, so every worker would show at least the bench process's own size)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def worker(kind: str, db: Path, out: Path) -> dict:
    """One measurement in this (fresh) process: seconds, items written, peak RSS."""
    import sqlite3

    from shardlens import exports
    from shardlens.catalog import connect_readonly
    from shardlens.coco import CocoOptions, write_coco
    from shardlens.config import load_config
    from shardlens.label_studio import write_label_studio
    from shardlens.ontology import label_space

    config = load_config()
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    t0 = time.perf_counter()
    if kind == "imports":
        import pyarrow.parquet  # noqa: F401 (the Parquet writer's share of the floor)
    elif kind == "csv":
        rows = 0

        def counted():
            nonlocal rows
            for row in exports.annotation_rows(db, IMAGES_ROOT):
                rows += 1
                yield row

        exports.write_csv(out / "annotations.csv", counted())
        result["items"] = rows
    elif kind == "csv+json":
        conn = connect_readonly(db)
        digests = exports._write_tables(conn, IMAGES_ROOT, out / "annotations.csv", out / "annotations.json")
        conn.close()
        result["items"] = sum(n for _, n in digests.values())
    elif kind == "parquet":
        conn = connect_readonly(db)
        conn.execute("BEGIN")
        digests = exports._write_tables(conn, IMAGES_ROOT, out / "annotations.csv", out / "annotations.json")
        t0 = time.perf_counter()  # the Parquet part only: every partition of a new dataset
        update = exports.write_parquet_dataset(conn, IMAGES_ROOT, out / "annotations.parquet", digests)
        conn.close()
        result.update(items=update.rows, partitions=len(update.written))
    elif kind == "coco":
        write_coco(db, out, CocoOptions.from_config(config, images_root=IMAGES_ROOT))
        conn = sqlite3.connect(db)  # counted in the catalog: loading the files would measure that
        images = conn.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]
        items = conn.execute("SELECT COUNT(*) FROM final_annotations").fetchone()[0]
        conn.close()
        result["items"] = 2 * images + items
    elif kind == "labelstudio":
        write_label_studio(db, out, config["export"]["label_studio_url_prefix"], label_space(config))
        conn = sqlite3.connect(db)
        result["items"] = conn.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]
        conn.close()
    elif kind == "all":
        export = exports.export_catalog(db, out, config=config, images_root=IMAGES_ROOT)
        result.update(
            items=export.rows, parts=export.seconds,
            written=len(export.dataset.written), unchanged=len(export.dataset.unchanged), removed=len(export.dataset.removed),
        )  # fmt: skip
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    result["seconds"] = time.perf_counter() - t0
    result["peak_mb"] = _peak_mb()
    return result


def measure(kind: str, db: Path, out: Path) -> dict:
    proc = subprocess.run([PYTHON, __file__, "--worker", kind, "--db", str(db), "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    log(f"{kind}: {result}")
    return result


def change_one_shard(cache: Path, db: Path, names: list[str], shard: str) -> dict:
    """Edit one detection of ``shard`` (its score), write the manifest again and update the
    catalog in place, as the workflow's detect, manifest and catalog rules do."""
    from shardlens.catalog import build_catalog
    from shardlens.manifest import build_manifest, write_manifest
    from shardlens.records import read_jsonl, write_jsonl

    path = cache / "detect" / f"{shard}.jsonl"
    records = list(read_jsonl(path, "detection"))
    records[0] = {**records[0], "score": round(records[0]["score"] / 2, 6)}
    write_jsonl(path, "detection", records)
    write_manifest(cache / "manifest.json", build_manifest(cache, names, {}))
    return build_catalog(cache, db, log=lambda message: None)


def record_one_review(db: Path, store: Path, shard: str) -> None:
    import sqlite3

    from shardlens.review_store import Review
    from shardlens.reviews import record_reviews

    conn = sqlite3.connect(db)
    image_id, region_id = conn.execute("SELECT image_id, region_id FROM regions WHERE shard = ? ORDER BY image_id LIMIT 1", (shard,)).fetchone()
    conn.close()
    record_reviews([Review(image_id, region_id, None, "relabeled", "bench label", "bench")], db, store, "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    add_common_args(parser)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.db, args.out)))
        return

    from catalog_import import generate_cache

    from shardlens.catalog import build_catalog

    shards = max(1, args.images // args.per_shard)
    tmp = Path(tempfile.mkdtemp(prefix="shardlens-export-"))
    cache, db = tmp / "cache", tmp / "results" / "annotations.sqlite"
    log(f"generating a cache of {shards} shards x {args.per_shard} images")
    n_images, names = generate_cache(cache, shards, args.per_shard)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the job summary line: not part of the table
        catalog = build_catalog(cache, db, log=lambda message: None)
    t_catalog = time.perf_counter() - t0
    db_mb = sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 1e6
    log(f"catalog: {catalog['rows']:,} rows in {t_catalog:.1f} s, {db_mb:.0f} MB")

    load_before = wait_for_quiet(args.max_load, args.max_wait)
    floor = measure("imports", db, tmp / "imports")
    formats = [
        ("csv", "CSV (`write_csv` over `annotation_rows`)", "rows"),
        ("csv+json", "CSV + JSON, one pass (as the export writes them)", "rows"),
        ("parquet", "Parquet dataset, every partition written (a new dataset)", "rows"),
        ("coco", "COCO + COCO-Text", "entries"),
        ("labelstudio", "Label Studio tasks + config", "tasks"),
        ("all", "whole export (`export_catalog`), first run", "rows"),
    ]
    results = {kind: measure(kind, db, tmp / ("out" if kind == "all" else kind)) for kind, _, _ in formats}

    rows = results["all"]["items"]
    log("re-run, nothing changed")
    reruns = [("nothing changed", measure("all", db, tmp / "out"))]
    log("re-run after one shard changed")
    with contextlib.redirect_stdout(sys.stderr):
        stats = change_one_shard(cache, db, names, names[0])
    assert stats["loaded"] == [names[0]], stats
    changed = measure("all", db, tmp / "out")
    reruns.append((f"one shard changed (a detection of shard {names[0]} edited, catalog updated incrementally)", changed))
    log("re-run after a review")
    record_one_review(db, tmp / "reviews.sqlite", names[-1])
    reviewed = measure("all", db, tmp / "out")
    reruns.append((f"a review recorded (a region of shard {names[-1]})", reviewed))

    lines = [
        f"Generated catalog: {shards} shards × {args.per_shard} images = {n_images:,} images, {catalog['rows']:,} catalog rows, "
        f"{rows:,} export rows (regions, OCR lines, images with neither), {db_mb:.0f} MB; built in {t_catalog:.0f} s. "
        f"Each line is a fresh process; its peak RSS includes the interpreter and imports (with pyarrow: {floor['peak_mb']:.0f} MB alone).",
        "",
        "| export | items | seconds | items/s | peak RSS |",
        "|---|---|---|---|---|",
        f"| python + imports (the floor) | – | – | – | {floor['peak_mb']:.0f} MB |",
    ]
    for kind, title, unit in formats:
        r = results[kind]
        lines.append(f"| {title} | {r['items']:,} {unit} | {r['seconds']:.1f} | {r['items'] / r['seconds']:,.0f} | {r['peak_mb']:.0f} MB |")
    lines += [
        "",
        f"Re-runs of the whole export into the first run's folder ({len(names)} partitions):",
        "",
        "| run | partitions written / unchanged / removed | Parquet part (s) | CSV + JSON (s) | COCO (s) | Label Studio (s) | whole export (s) | peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in [("first run (a new dataset)", results["all"]), *reruns]:
        p = r["parts"]
        lines.append(
            f"| {label} | {r['written']} / {r['unchanged']} / {r['removed']} | {p['parquet']:.2f} | {p['tables']:.1f} | {p['coco']:.1f} "
            f"| {p['labelstudio']:.1f} | {r['seconds']:.1f} | {r['peak_mb']:.0f} MB |"
        )
    lines += [
        "",
        "COCO entries: the images, listed in both files, and the regions and OCR lines. "
        "The Parquet part of a re-run is the state check, one more (filtered) query of the catalog for the changed shards, and "
        "their partitions; which shards changed comes from the CSV + JSON pass (a digest of each shard's rows).",
    ]
    emit("Exports at scale: streamed formats and the partitioned Parquet dataset", command_line(), load_before, lines, append=args.append)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
