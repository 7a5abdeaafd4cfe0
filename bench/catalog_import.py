"""Catalog import: rows/s of `shardlens import-cache` (shardlens.catalog.import_cache) against a
plain `executemany` loop into the same schema in one transaction, and size on disk per image.

The cache is generated: `--shards` shards of `--per-shard` images, every stage's records written
with `shardlens.records.write_jsonl` (so they are valid), ~2 regions with 3 label candidates per
image, 2 OCR lines on 30 % of the images, one 384-d embedding per distinct text of a shard, and
the manifest from `shardlens.manifest.build_manifest`. The plain loop opens the catalog with the
same `connect()` (same tables and indexes), parses each JSONL line with `json.loads` (no schema
validation, no digest check) and inserts the same rows. Then cProfile of one import_cache run
shows where its time goes.

    python bench/catalog_import.py [--shards 200 --per-shard 50] [--append]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_common_args, command_line, emit, log, wait_for_quiet  # noqa: E402

sys.path.insert(0, str(REPO))

NOUNS = "person car cat dog cup bottle chair table bus truck bicycle phone book clock bench bird horse umbrella".split()
WORDS = "open hours exit sale today parking station coffee bakery market hotel pharmacy bank museum".split()


def generate_cache(cache: Path, shards: int, per_shard: int) -> tuple[int, list[str]]:
    import numpy as np

    from shardlens.manifest import build_manifest, write_manifest
    from shardlens.records import SCHEMA_VERSION, write_jsonl
    from shardlens.vectors import encode_vector

    rng = np.random.default_rng(5)
    names = [f"{i:04d}" for i in range(shards)]
    n_images = 0
    for shard in names:
        ingest, gate, ocr, detect = [], [], [], []
        texts: dict[tuple[str, str], list[list]] = {}
        for k in range(per_shard):
            n_images += 1
            path = f"camera{k % 7}/day{int(shard):04d}/img_{k:05d}.jpg"
            image_id = hashlib.sha256(f"{shard}/{k}".encode()).hexdigest()
            w, h = 4000, 3000
            ingest.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "image_id": image_id,
                    "path": path,
                    "bytes": int(rng.integers(1e6, 5e6)),
                    "width": w,
                    "height": h,
                    "format": "JPEG",
                    "phash": None,
                    "status": "ok",
                    "error": None,
                    "error_detail": None,
                }
            )
            has_text = bool(rng.random() < 0.3)
            gate.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "image_id": image_id,
                    "has_text": has_text,
                    "score": round(float(rng.random()), 6),
                    "decision": "ocr" if has_text else "skip",
                    "skip_reason": None if has_text else "no_text_regions",
                    "text_regions": 2 if has_text else 0,
                    "gate_version": "ppocr-det-onnx:PP-OCRv6_det_small@0123456789ab",
                }
            )
            if has_text:
                for line_no in range(2):
                    text = " ".join(rng.choice(WORDS, size=3)).upper()
                    ocr.append(
                        {
                            "schema_version": SCHEMA_VERSION,
                            "image_id": image_id,
                            "line_no": line_no,
                            "region_id": None,
                            "text": text,
                            "confidence": 0.93,
                            "language": "en",
                            "language_confidence": 0.8,
                            "bbox": [100.0, 100.0 + 60 * line_no, 900.0, 150.0 + 60 * line_no],
                            "source": "rapidocr-3.10.0:PP-OCRv6_rec_small@0123456789ab",
                        }
                    )
                    texts.setdefault(("ocr", text), []).append([image_id, None, line_no])
            for region_id in range(int(rng.integers(0, 5))):
                labels = [
                    {"label": str(c), "score": round(0.9 - 0.2 * i, 6), "source": "detector"} for i, c in enumerate(rng.choice(NOUNS, size=3, replace=False))
                ]
                x0, y0 = float(rng.integers(0, 3000)), float(rng.integers(0, 2000))
                detect.append(
                    {
                        "schema_version": SCHEMA_VERSION,
                        "image_id": image_id,
                        "region_id": region_id,
                        "bbox": [x0, y0, x0 + 500.0, y0 + 400.0],
                        "score": labels[0]["score"],
                        "labels": labels,
                        "caption": labels[0]["label"],
                        "detector_label": labels[0]["label"],
                        "detector_version": "nanodet:nanodet-g-416@0123456789ab",
                    }
                )
                texts.setdefault(("caption", labels[0]["label"]), []).append([image_id, region_id, None])
                for c in labels[1:]:
                    texts.setdefault(("label", c["label"]), []).append([image_id, region_id, None])
        embed = []
        for kind, text in sorted(texts):
            v = rng.standard_normal(384).astype("float32")
            v /= np.linalg.norm(v)
            embed.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "kind": kind,
                    "text": text,
                    "occurrences": texts[(kind, text)],
                    "model": "all-MiniLM-L6-v2@0123456789ab",
                    "dim": 384,
                    "vector": encode_vector(v),
                }
            )
        write_jsonl(cache / "ingest" / f"{shard}.jsonl", "ingest", ingest)
        write_jsonl(cache / "gate" / f"{shard}.jsonl", "gate", gate)
        write_jsonl(cache / "ocr" / f"{shard}.jsonl", "ocr", ocr)
        write_jsonl(cache / "detect" / f"{shard}.jsonl", "detection", detect)
        write_jsonl(cache / "regions" / f"{shard}.jsonl", "region", detect)  # no ontology: the detector's names
        write_jsonl(cache / "embed" / f"{shard}.jsonl", "embedding", embed)
    write_manifest(cache / "manifest.json", build_manifest(cache, names, {}))
    return n_images, names


def plain_import(cache: Path, db: Path, names: list[str]) -> int:
    """The same rows, json.loads + executemany, one transaction: the floor for this schema."""
    from shardlens.catalog import STAGE_TABLES, connect, record_columns
    from shardlens.stages import SHARD_STAGES

    conn = connect(db)
    rows = 0
    conn.execute("BEGIN IMMEDIATE")
    for shard in names:
        for stage, kind in SHARD_STAGES.items():
            if kind not in STAGE_TABLES:  # the detector's own records stay in the cache
                continue
            table, _ = STAGE_TABLES[kind]
            columns = record_columns(kind)
            batch, labels = [], []
            with (cache / stage / f"{shard}.jsonl").open(encoding="utf-8") as handle:
                for line in handle:
                    r = json.loads(line)
                    batch.append(
                        (
                            shard,
                            *[
                                json.dumps(r.get(c), separators=(",", ":"), ensure_ascii=False)
                                if isinstance(r.get(c), (list, dict))
                                else int(r[c])
                                if isinstance(r.get(c), bool)
                                else r.get(c)
                                for c in columns
                            ],
                        )
                    )
                    if kind == "region":
                        labels += [(shard, r["image_id"], r["region_id"], rank, c["label"], c["score"], c["source"]) for rank, c in enumerate(r["labels"])]
            marks = ", ".join("?" * (len(columns) + 1))
            conn.executemany(f"INSERT INTO {table} (shard, {', '.join(columns)}) VALUES ({marks})", batch)
            if labels:
                conn.executemany("INSERT INTO region_labels VALUES (?, ?, ?, ?, ?, ?, ?)", labels)
            rows += len(batch) + len(labels)
    conn.execute("COMMIT")
    conn.close()
    return rows


def db_size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=200)
    parser.add_argument("--per-shard", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    add_common_args(parser)
    args = parser.parse_args()

    from shardlens.catalog import import_cache

    tmp = Path(tempfile.mkdtemp(prefix="shardlens-catalog-"))
    cache = tmp / "cache"
    log(f"generating a cache of {args.shards} shards x {args.per_shard} images")
    n_images, names = generate_cache(cache, args.shards, args.per_shard)
    cache_bytes = sum(p.stat().st_size for p in cache.rglob("*.jsonl"))

    load_before = wait_for_quiet(args.max_load, args.max_wait)
    t_import, t_plain = [], []
    rows_import = rows_plain = 0
    for k in range(args.repeats):
        db = tmp / f"import{k}" / "catalog.sqlite"
        t0 = time.perf_counter()
        stats = import_cache(cache, db, log=lambda m: None)
        t_import.append(time.perf_counter() - t0)
        rows_import = stats["rows"]
        db2 = tmp / f"plain{k}" / "catalog.sqlite"
        t0 = time.perf_counter()
        rows_plain = plain_import(cache, db2, names)
        t_plain.append(time.perf_counter() - t0)
        log(f"repeat {k + 1}: import_cache {t_import[-1]:.2f} s ({rows_import} rows), plain {t_plain[-1]:.2f} s ({rows_plain} rows)")
    ti, tp = statistics.median(t_import), statistics.median(t_plain)
    size_import, size_plain = db_size(tmp / "import0" / "catalog.sqlite"), db_size(tmp / "plain0" / "catalog.sqlite")

    log("cProfile of one import_cache run")
    profiler = cProfile.Profile()
    profiler.enable()
    import_cache(cache, tmp / "profiled" / "catalog.sqlite", log=lambda m: None)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(v[2] for v in stats.values())

    def cum(name: str, file_part: str = "") -> float:
        return sum(v[3] for k, v in stats.items() if k[2] == name and file_part in k[0])

    parts = {
        "schema validation (`validate_record`: the compiled check first)": cum("validate_record"),
        "digest check (`file_digest`)": cum("file_digest"),
        "JSON parsing (`json.loads`)": cum("loads", "json"),
        "SQLite inserts (`executemany`)": cum("<method 'executemany' of 'sqlite3.Connection' objects>"),
    }

    lines = [
        f"Generated cache: {args.shards} shards × {args.per_shard} images = {n_images:,} images, {rows_import:,} rows "
        f"(paths, gate, OCR lines, regions, region labels, embeddings). Median of {args.repeats}, fresh database each time.",
        "",
        "| loader | time (s) | rows/s | images/s | ratio (import-cache / plain) | database size | per image |",
        "|---|---|---|---|---|---|---|",
        f"| `shardlens import-cache` (`import_cache`) | {ti:.2f} | {rows_import / ti:,.0f} | {n_images / ti:,.0f} | **{tp / ti:.2f}** | {size_import / 1e6:.1f} MB | {size_import / n_images / 1024:.1f} KiB |",
        f"| plain `json.loads` + `executemany`, one transaction | {tp:.2f} | {rows_plain / tp:,.0f} | {n_images / tp:,.0f} | 1.00 | {size_plain / 1e6:.1f} MB | {size_plain / n_images / 1024:.1f} KiB |",
        "",
        f"Cache on disk (JSONL, 5 stages): {cache_bytes / 1e6:.1f} MB, {cache_bytes / n_images / 1024:.1f} KiB per image "
        f"(embeddings are base64 float32: 384 × 4 bytes per distinct text).",
        "",
        "Where `import_cache`'s time goes (cProfile, cumulative, of one run; the profiler slows Python code more than C):",
        "",
        "| part | seconds | share |",
        "|---|---|---|",
    ]
    for name, sec in parts.items():
        lines.append(f"| {name} | {sec:.2f} | {sec / total:.0%} |")
    lines.append(f"| total (profiled) | {total:.2f} | 100% |")
    emit("Catalog import: import-cache vs a plain executemany loop", command_line(), load_before, lines, append=args.append)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
