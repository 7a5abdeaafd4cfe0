"""The incremental catalog (issue 17, item 3): the catalog is updated in place in one transaction
(only changed shards, removed shards dropped, clusters, the reviews' copy and the run) and ends
equal, row for row in every table and view, to a full rebuild; a SIGKILL or a full disk leaves the
previous catalog and no stray file; `--full` and a changed schema or catalog hash rebuild; the
name Snakemake removes before the job comes back from the second name; the compiled record check
answers as jsonschema does; the importer keeps up with a plain executemany loop.

Caches are synthetic (every stage's records written by the real writer, the real manifest), so
no model runs, except the test that drives the stage functions on real images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from shardlens import catalog
from shardlens.catalog import build_catalog, catalog_hash, import_cache, keep_path
from shardlens.manifest import build_manifest, write_manifest
from shardlens.records import SCHEMA_VERSION, load_schema, read_jsonl, record_check, write_jsonl
from shardlens.review_store import Review, connect_store
from shardlens.reviews import record_reviews
from shardlens.shard_versions import TRACKING_TABLES

REPO = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "gate", "ocr", "regions", "embed"]  # the catalog reads regions (the ontology applied), not detect
NOUNS = ["person", "car", "cat", "dog", "cup", "bus", "bench", "bird"]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def image_records(name: str, version: str = "") -> dict[str, list[dict]]:
    """Every stage's records of one image; ``version`` changes its content (a new image_id,
    other texts and regions), as an edited file would."""
    image_id = _digest(name + version)
    n = int(image_id[:2], 16)
    out = {
        "ingest": [
            {
                "schema_version": SCHEMA_VERSION,
                "image_id": image_id,
                "path": name,
                "bytes": 1000 + n,
                "width": 640,
                "height": 480,
                "format": "PNG",
                "phash": None,
                "status": "ok",
                "error": None,
                "error_detail": None,
            }
        ],
        "gate": [
            {
                "schema_version": SCHEMA_VERSION,
                "image_id": image_id,
                "has_text": n % 2 == 0,
                "score": round(n / 255, 6),
                "decision": "ocr" if n % 2 == 0 else "skip",
                "skip_reason": None if n % 2 == 0 else "no_text_regions",
                "text_regions": 1 if n % 2 == 0 else 0,
                "gate_version": "test-gate",
            }
        ],
        "ocr": [],
        "region": [],
    }
    if n % 2 == 0:
        out["ocr"] = [
            {
                "schema_version": SCHEMA_VERSION,
                "image_id": image_id,
                "line_no": k,
                "region_id": None,
                "text": f"SIGN {n % 7} {k}{version}",
                "confidence": 0.9,
                "language": None,
                "language_confidence": None,
                "bbox": [10.0, 10.0 + 40 * k, 200.0, 40.0 + 40 * k],
                "source": "test-ocr",
            }
            for k in range(1 + n % 2 + (n % 3 == 0))
        ]
    for region_id in range(n % 3):
        labels = [{"label": NOUNS[(n + region_id + j) % len(NOUNS)], "score": round(0.9 - 0.2 * j, 6), "source": "detector"} for j in range(2)]
        out["region"].append(
            {
                "schema_version": SCHEMA_VERSION,
                "image_id": image_id,
                "region_id": region_id,
                "bbox": [5.0 + region_id, 5.0, 300.0, 200.0],
                "score": labels[0]["score"],
                "labels": labels,
                "caption": labels[0]["label"],
                "detector_label": labels[0]["label"],
                "detector_version": "test-det",
            }
        )
    return out


def write_cache(folder: Path, plan: dict[str, list[tuple[str, str]]], cluster_texts: int = 3) -> Path:
    """A cache of ``plan`` (shard -> [(path, version)]) with every shard stage, the clusters
    aggregate (its labels depend on ``cluster_texts``) and the manifest."""
    all_texts: dict[tuple[str, str], int] = {}
    for shard, images in plan.items():
        stage_records: dict[str, list[dict]] = {"ingest": [], "gate": [], "ocr": [], "region": []}
        texts: dict[tuple[str, str], list[list]] = {}
        for path, version in sorted(images):
            for kind, records in image_records(path, version).items():
                stage_records[kind] += records
        for line in stage_records["ocr"]:
            texts.setdefault(("ocr", line["text"]), []).append([line["image_id"], None, line["line_no"]])
        for region in stage_records["region"]:
            texts.setdefault(("caption", region["caption"]), []).append([region["image_id"], region["region_id"], None])
        embed = [
            {"schema_version": SCHEMA_VERSION, "kind": kind, "text": text, "occurrences": occ, "model": "test-embed", "dim": 1, "vector": "AACAPw=="}
            for (kind, text), occ in sorted(texts.items())
        ]
        for key, occ in texts.items():
            all_texts[key] = all_texts.get(key, 0) + len(occ)
        for stage, kind in (("ingest", "ingest"), ("gate", "gate"), ("ocr", "ocr"), ("regions", "region")):
            write_jsonl(folder / stage / f"{shard}.jsonl", kind, stage_records[kind])
        write_jsonl(folder / "embed" / f"{shard}.jsonl", "embedding", embed)
    regions = sorted(t for (k, t) in all_texts if k == "caption")
    lines = sorted(t for (k, t) in all_texts if k == "ocr")
    clusters = [
        {
            "schema_version": SCHEMA_VERSION,
            "cluster_id": 0,
            "item": "region",
            "label": regions[0] if regions else "none",
            "keywords": regions[:cluster_texts],
            "size": sum(all_texts[("caption", t)] for t in regions),
            "members": [
                {"text": t, "item": "region", "kinds": ["caption"], "count": all_texts[("caption", t)], "probability": 0.8, "membership": "fitted"}
                for t in regions
            ],
        },
        {
            "schema_version": SCHEMA_VERSION,
            "cluster_id": -1,
            "item": None,
            "label": "unclustered",
            "keywords": [],
            "size": sum(all_texts[("ocr", t)] for t in lines),
            "members": [
                {"text": t, "item": "text", "kinds": ["ocr"], "count": all_texts[("ocr", t)], "probability": 0.0, "membership": "fitted"} for t in lines
            ],
        },
    ]
    write_jsonl(folder / "clusters.jsonl", "cluster", clusters)
    write_manifest(folder / "manifest.json", build_manifest(folder, sorted(plan), {}, stages=STAGES))
    return folder


def plan_v1() -> dict[str, list[tuple[str, str]]]:
    return {f"{s:04d}": [(f"s{s}/img{j}.png", "") for j in range(6)] for s in range(4)}


def plan_v2() -> dict[str, list[tuple[str, str]]]:
    """From v1: shard 0000 unchanged; 0001 gains two images; 0002 loses one and one is edited;
    0003 is gone from the plan."""
    plan = plan_v1()
    plan["0001"] += [("s1/new-a.png", ""), ("s1/new-b.png", "")]
    plan["0002"] = [(p, "edited" if p.endswith("img3.png") else v) for p, v in plan["0002"] if not p.endswith("img0.png")]
    del plan["0003"]
    return plan


def objects(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()


def dump(db: Path) -> dict:
    """Every table and view, row for row (sorted), and the last run without its run_id; not the
    change tracking (how the catalog got here, shardlens/shard_versions.py)."""
    conn = sqlite3.connect(db)
    out = {}
    for kind, name in objects(conn):
        if name in ("runs", *TRACKING_TABLES):
            continue
        out[f"{kind} {name}"] = sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
    out["last run"] = conn.execute("SELECT manifest_sha256, schema_hash, catalog_hash FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
    out["schema"] = sorted(conn.execute("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall(), key=repr)
    conn.close()
    return out


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


QUIET = {"log": lambda message: None}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    base = tmp_path_factory.mktemp("incremental")
    return write_cache(base / "v1", plan_v1()), write_cache(base / "v2", plan_v2(), cluster_texts=2)


@pytest.fixture(scope="module")
def full_v2(caches, tmp_path_factory) -> dict:
    db = tmp_path_factory.mktemp("full") / "v2.sqlite"
    stats = import_cache(caches[1], db, **QUIET)
    assert stats["mode"] == "new" and stats["shards_loaded"] == 3
    return dump(db)


def cluster_rows_that_differ(old_cache: Path, new_cache: Path) -> int:
    """Rows of ``clusters`` and ``cluster_members`` an update from one cache to the other must
    write: those gone, new or changed (the importer writes no others)."""

    def rows(cache: Path) -> tuple[dict, dict]:
        clusters, members = {}, {}
        for r in read_jsonl(cache / "clusters.jsonl", "cluster"):
            clusters[r["cluster_id"]] = (r["item"], r["label"], r["keywords"], r["size"])
            members.update({(m["item"], m["text"]): (r["cluster_id"], m["kinds"], m["count"], m["probability"], m["membership"]) for m in r["members"]})
        return clusters, members

    total = 0
    for old, new in zip(rows(old_cache), rows(new_cache)):
        total += len(old.keys() - new.keys()) + sum(1 for k, v in new.items() if old.get(k) != v)
    return total


def test_incremental_update_equals_a_full_rebuild_and_loads_only_changed_shards(caches, full_v2, tmp_path):
    db = tmp_path / "c.sqlite"
    first = import_cache(caches[0], db, **QUIET)
    assert (first["mode"], first["shards_loaded"]) == ("new", 4)
    conn = sqlite3.connect(db)
    rows_of_0000 = conn.execute("SELECT COUNT(*) FROM paths WHERE shard = '0000'").fetchone()[0]
    versions = dict(conn.execute("SELECT shard, version FROM shard_versions"))
    conn.close()
    assert versions == {"0000": 1, "0001": 1, "0002": 1, "0003": 1}  # a new catalog: each loaded shard once
    stats = import_cache(caches[1], db, **QUIET)
    assert stats["mode"] == "incremental"
    assert stats["loaded"] == ["0001", "0002"] and stats["removed"] == ["0003"] and stats["shards_unchanged"] == 1
    # the rows written are those of the two changed shards and the clusters, nothing of 0000
    conn = sqlite3.connect(db)
    changed_rows = sum(
        conn.execute(f"SELECT COUNT(*) FROM {table} WHERE shard IN ('0001', '0002')").fetchone()[0]
        for table in ("paths", "gate", "ocr_lines", "regions", "region_labels", "embeddings")
    )
    assert stats["rows"] == changed_rows + cluster_rows_that_differ(caches[0], caches[1])
    assert conn.execute("SELECT COUNT(*) FROM paths WHERE shard = '0000'").fetchone()[0] == rows_of_0000 == 6
    assert conn.execute("SELECT COUNT(*) FROM paths WHERE shard = '0003'").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    # the change tracking marks the shards whose exported rows changed: not 0000's
    after = dict(conn.execute("SELECT shard, version FROM shard_versions"))
    assert after["0000"] == 1 and all(after[s] > 1 for s in ("0001", "0002", "0003"))
    conn.close()
    assert dump(db) == full_v2
    # nothing changed: nothing is read but the digests
    again = import_cache(caches[1], db, **QUIET)
    assert (again["mode"], again["shards_loaded"], again["shards_unchanged"], again["rows"]) == ("incremental", 0, 3, 0)
    assert dump(db) == full_v2


def test_back_to_the_older_cache_equals_its_full_rebuild(caches, tmp_path):
    """Images removed and shards added going the other way, v2 -> v1."""
    fresh = tmp_path / "fresh.sqlite"
    import_cache(caches[0], fresh, **QUIET)
    db = tmp_path / "c.sqlite"
    import_cache(caches[1], db, **QUIET)
    stats = import_cache(caches[0], db, **QUIET)
    assert stats["loaded"] == ["0001", "0002", "0003"] and stats["removed"] == []
    assert dump(db) == dump(fresh)


def test_full_flag_and_cli_rebuild_everything_to_the_same_catalog(caches, full_v2, tmp_path):
    from typer.testing import CliRunner

    from shardlens.cli import app

    db = tmp_path / "c.sqlite"
    import_cache(caches[0], db, **QUIET)
    conn = sqlite3.connect(db)  # a row no cache holds: a full rebuild drops it, an update never sees it
    conn.execute("INSERT INTO paths (shard, path, status) VALUES ('0000', 'stray.png', 'ok')")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(app, ["import-cache", str(caches[1]), str(db)])
    assert result.exit_code == 0, result.output
    assert "incremental" in result.output and "2 shards loaded, 1 unchanged, 1 removed" in result.output
    assert dump(db) != full_v2  # the stray row is still there
    result = CliRunner().invoke(app, ["import-cache", "--full", str(caches[1]), str(db)])
    assert result.exit_code == 0, result.output
    assert "full rebuild" in result.output and "3 shards loaded, 0 unchanged" in result.output
    assert dump(db) == full_v2
    stats = import_cache(caches[1], db, full=True, **QUIET)
    assert (stats["mode"], stats["shards_loaded"]) == ("full", 3)
    assert dump(db) == full_v2


def test_a_changed_schema_or_catalog_hash_rebuilds_in_full(caches, full_v2, tmp_path):
    from test_reliability_catalog import phase1_cache

    db = tmp_path / "c.sqlite"
    import_cache(caches[1], db, **QUIET)
    # the cache's schema hash changes (a phase-1 cache, read through its adapter): rebuilt
    old = phase1_cache(tmp_path / "phase1")
    stats = import_cache(old, db, **QUIET)
    assert stats["mode"] == "full" and "the cache's schema hash changed" in stats["reason"]
    fresh = tmp_path / "fresh-phase1.sqlite"
    import_cache(old, fresh, **QUIET)
    assert dump(db) == dump(fresh)
    # and back to the current schema hash: rebuilt again, equal to a fresh catalog
    stats = import_cache(caches[1], db, **QUIET)
    assert stats["mode"] == "full" and stats["shards_loaded"] == 3
    assert dump(db) == full_v2
    # a catalog written by another layout (its last run records another catalog hash)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE runs SET catalog_hash = 'f00'")
    conn.execute("INSERT INTO paths (shard, path, status) VALUES ('0000', 'stray.png', 'ok')")
    conn.commit()
    conn.close()
    stats = import_cache(caches[1], db, **QUIET)
    assert stats["mode"] == "full" and f"catalog hash f00 -> {catalog_hash()[:12]}" in stats["reason"]
    assert dump(db) == full_v2
    # written by a shardlens before this one: no catalog_hash column at all
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE runs DROP COLUMN catalog_hash")
    conn.commit()
    conn.close()
    stats = import_cache(caches[1], db, **QUIET)
    assert stats["mode"] == "full" and "older shardlens" in stats["reason"]
    assert dump(db) == full_v2


def test_reviews_are_kept_through_updates_and_rebuilds(caches, tmp_path):
    db = tmp_path / "results" / "annotations.sqlite"
    store = tmp_path / "reviews" / "reviews.sqlite"
    build_catalog(caches[0], db, reviews_db=store, **QUIET)
    conn = sqlite3.connect(db)
    region = conn.execute("SELECT image_id, region_id FROM regions WHERE shard = '0000' ORDER BY image_id, region_id LIMIT 1").fetchone()
    line = conn.execute("SELECT image_id, line_no FROM ocr_lines WHERE shard = '0002' ORDER BY image_id, line_no LIMIT 1").fetchone()
    conn.close()
    record_reviews(
        [
            Review(region[0], region[1], None, "relabeled", "tram", reviewer="ann"),
            Review(line[0], None, line[1], "accepted", "SIGN", reviewer="bo"),
        ],
        db,
        store,
        "test",
    )
    store_rows = sorted(connect_store(store).execute("SELECT * FROM reviews").fetchall())

    def reviews_in(path: Path) -> list:
        c = sqlite3.connect(path)
        try:
            return sorted(c.execute("SELECT * FROM reviews").fetchall())
        finally:
            c.close()

    stats = build_catalog(caches[1], db, reviews_db=store, **QUIET)
    assert stats["mode"] == "incremental" and stats["reviews"] == 2
    assert reviews_in(db) == store_rows
    conn = sqlite3.connect(db)
    label = conn.execute("SELECT final_label FROM final_annotations WHERE image_id = ? AND region_id = ?", region).fetchone()[0]
    conn.close()
    assert label == "tram"
    # a full rebuild without the store keeps the catalog's copy; with it, copies it again
    stats = import_cache(caches[1], db, full=True, **QUIET)
    assert stats["mode"] == "full" and reviews_in(db) == store_rows
    fresh = tmp_path / "fresh.sqlite"
    import_cache(caches[1], fresh, reviews_db=store, **QUIET)
    assert dump(db) == dump(fresh)


def test_the_name_snakemake_removes_comes_back_and_the_update_stays_incremental(caches, full_v2, tmp_path):
    db = tmp_path / "results" / "annotations.sqlite"
    build_catalog(caches[0], db, **QUIET)
    keep = keep_path(db)
    assert os.path.samefile(db, keep)
    reader = catalog.connect_readonly(db)  # the dashboard, reading all along
    assert reader.execute("SELECT COUNT(*) FROM paths").fetchone()[0] == 24
    db.unlink()  # what Snakemake does to a job's output before the job runs
    stats = build_catalog(caches[1], db, **QUIET)
    assert stats["mode"] == "incremental" and stats["loaded"] == ["0001", "0002"]
    assert os.path.samefile(db, keep)
    assert reader.execute("SELECT COUNT(*) FROM paths").fetchone()[0] == 19  # the same file, updated
    reader.close()
    assert dump(db) == full_v2
    names = {p.name for p in db.parent.iterdir()} - {f"{db.name}-wal", f"{db.name}-shm"}  # SQLite's own, kept by a reader
    assert sorted(names) == [keep.name, db.name]


KILLED_IMPORT = """
import sys
from pathlib import Path
from shardlens.catalog import build_catalog, import_cache
cache, db, marker, entry = sys.argv[1:5]

def progress(stats):
    if stats["shards_loaded"] == 2:  # two shards written inside the open transaction: wait here
        Path(marker).write_text(str(stats["rows"]))
        sys.stdin.read()  # until killed

if entry == "import":
    import_cache(cache, db, log=lambda m: None, progress=progress)
else:
    import shardlens.catalog.build as c
    real = c.import_cache
    c.import_cache = lambda *a, **k: real(*a, progress=progress, **k)
    build_catalog(cache, db, log=lambda m: None)
"""


def _kill_mid_import(cache: Path, db: Path, marker: Path, entry: str) -> int:
    """Start an import, wait until it has written two shards' rows, SIGKILL it; return the rows
    it had written."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_IMPORT, str(cache), str(db), str(marker), entry], cwd=REPO, stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (marker.exists() and marker.read_text()):
            assert proc.poll() is None, f"the import ended before it could be killed ({proc.returncode})"
            assert time.monotonic() < deadline, "the import never reached two shards"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return int(marker.read_text())


@pytest.mark.parametrize("entry", ["import", "build"])
def test_a_killed_update_leaves_the_previous_catalog_and_a_rerun_completes(caches, full_v2, tmp_path, entry):
    db = tmp_path / "results" / "annotations.sqlite"
    build_catalog(caches[0], db, **QUIET)
    before = dump(db)
    if entry == "build":
        db.unlink()  # as Snakemake does before the job
    rows = _kill_mid_import(caches[1], db, tmp_path / "marker", entry)
    assert rows > 0
    assert integrity(db) == "ok"
    assert dump(db) == before  # nothing of v2, not even the two shards it had written
    leftovers = {p.name for p in db.parent.iterdir()} - {db.name, keep_path(db).name, f"{db.name}-wal", f"{db.name}-shm"}
    assert leftovers == set()
    stats = build_catalog(caches[1], db, **QUIET)
    assert stats["mode"] == "incremental" and stats["loaded"] == ["0001", "0002"]
    assert dump(db) == full_v2
    assert sorted(p.name for p in db.parent.iterdir()) == [keep_path(db).name, db.name]


FULL_DISK = """
import resource, signal, sys
from shardlens.catalog import build_catalog
cache, db, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    build_catalog(cache, db, log=lambda m: None)
except Exception as exc:
    print(type(exc).__name__, exc)
    sys.exit(3)
"""


def _build_on_a_full_disk(cache: Path, db: Path, limit: int) -> str:
    proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(cache), str(db), str(limit)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    return proc.stdout


def test_a_failed_build_leaves_no_temporary_file(tmp_path):
    big = write_cache(tmp_path / "big", {f"{s:04d}": [(f"s{s}/img{j}.png", "big") for j in range(150)] for s in range(6)})
    small = write_cache(tmp_path / "small", {"0000": [("a.png", "")]})
    db = tmp_path / "results" / "annotations.sqlite"
    build_catalog(small, db, **QUIET)
    before = dump(db)
    # an update that fills the disk: the previous catalog, its second name, nothing else
    out = _build_on_a_full_disk(big, db, db.stat().st_size + 64 * 1024)
    assert "full" in out or "File too large" in out or "disk" in out, out
    assert sorted(p.name for p in db.parent.iterdir()) == [keep_path(db).name, db.name]
    assert integrity(db) == "ok" and dump(db) == before
    # a first build that fills the disk leaves no file at all
    other = tmp_path / "other" / "annotations.sqlite"
    other.parent.mkdir()
    _build_on_a_full_disk(big, other, 48 * 1024)
    assert list(other.parent.iterdir()) == []
    # the file older versions left behind is removed by the next build
    (db.parent / f".{db.name}.building").write_bytes(b"x" * 1000)
    build_catalog(small, db, **QUIET)
    assert sorted(p.name for p in db.parent.iterdir()) == [keep_path(db).name, db.name]


# --- the compiled record check ------------------------------------------------------------------------


def valid_examples() -> dict[str, list[dict]]:
    records = image_records("x/sign.png")
    a, b = image_records("x/a.png"), image_records("x/b.png")
    examples = {
        "ingest": records["ingest"]
        + [
            {
                "schema_version": 1,
                "image_id": None,
                "path": "gone.png",
                "bytes": None,
                "width": None,
                "height": None,
                "format": None,
                "phash": None,
                "status": "error",
                "error": "not_found",
                "error_detail": "gone",
            }
        ],
        "gate": records["gate"] + a["gate"] + b["gate"],
        "ocr": [r for v in (records, a, b) for r in v["ocr"]],
        "region": [r for v in (records, a, b) for r in v["region"]],
        "embedding": [
            {
                "schema_version": 1,
                "kind": "caption",
                "text": "cat",
                "occurrences": [[_digest("x"), 0, None], [_digest("y"), None, 2]],
                "model": "m",
                "dim": 1,
                "vector": "AACAPw==",
            }
        ],
        "cluster": [
            {
                "schema_version": 1,
                "cluster_id": 3,
                "item": "text",
                "label": "OPEN",
                "keywords": ["open"],
                "size": 2,
                "members": [{"text": "OPEN", "item": "text", "kinds": ["ocr"], "count": 2, "probability": 0.5, "membership": "fitted"}],
            }
        ],
    }
    assert all(examples.values())
    return examples


ODD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2.0,
    1.5,
    7,
    "",
    "x",
    "ok",
    "error",
    "skip",
    "ocr",
    "detector",
    "a" * 64,
    "A" * 64,
    [],
    [1.0, 2.0, 3.0],
    [1.0, 2.0, 3.0, 4.0],
    [-1.0, 0.0, 1.0, 2.0],
    ["a"],
    {},
    {"label": "x"},
]


def mutations(record: dict):
    """The record with each field removed, set to each odd value, an extra field; and the same
    one level down (list items and nested objects)."""
    for key in record:
        yield {k: v for k, v in record.items() if k != key}
        for value in ODD_VALUES:
            yield {**record, key: value}
        value = record[key]
        if isinstance(value, list) and value:
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    for changed in mutations(item):
                        yield {**record, key: value[:i] + [changed] + value[i + 1 :]}
                elif isinstance(item, list):
                    for j in range(len(item)):
                        for odd in ODD_VALUES:
                            yield {**record, key: value[:i] + [item[:j] + [odd] + item[j + 1 :]] + value[i + 1 :]}
                    yield {**record, key: value[:i] + [item + [None]] + value[i + 1 :]}
                    yield {**record, key: value[:i] + [item[:-1]] + value[i + 1 :]}
                else:
                    for odd in ODD_VALUES:
                        yield {**record, key: value[:i] + [odd] + value[i + 1 :]}
    yield {**record, "extra": 1}


def test_the_compiled_check_answers_as_jsonschema_does():
    """fastjsonschema (draft-07 translation of the 2020-12 contracts) against jsonschema, the
    reference, on every kind the catalog reads: the same verdict on each valid record and on
    every mutation of it."""
    compared = refused = 0
    for kind, records in valid_examples().items():
        reference = Draft202012Validator(load_schema(kind))
        check = record_check(kind)
        for record in records:
            assert reference.is_valid(record) and check(record), (kind, record)
            for mutated in mutations(record):
                expected = reference.is_valid(mutated)
                assert check(mutated) == expected, (kind, mutated, list(reference.iter_errors(mutated))[:1])
                compared += 1
                refused += not expected
    assert compared > 3000 and refused > 2000


def test_a_bad_record_is_named_with_its_field(caches, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(caches[1], cache)
    target = cache / "gate" / "0001.jsonl"
    lines = target.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"score":', '"score":7,"old_score":')
    target.write_text("".join(lines))
    write_manifest(cache / "manifest.json", build_manifest(cache, ["0000", "0001", "0002"], {}, stages=STAGES))
    with pytest.raises(catalog.CatalogError, match=r"gate/0001\.jsonl line 3: gate record field '(\(record\)|score)'"):
        import_cache(cache, tmp_path / "c.sqlite", **QUIET)
    conn = sqlite3.connect(tmp_path / "c.sqlite")
    assert objects(conn) == []  # the tables were created inside the transaction, rolled back too
    conn.close()


def test_readers_see_the_old_catalog_or_the_new_one(caches, full_v2, tmp_path):
    """A reader's transaction started before the update keeps seeing the old catalog (WAL)."""
    db = tmp_path / "c.sqlite"
    import_cache(caches[0], db, **QUIET)
    reader = catalog.connect_readonly(db)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM paths").fetchone()[0] == 24
    import_cache(caches[1], db, **QUIET)
    assert reader.execute("SELECT COUNT(*) FROM paths").fetchone()[0] == 24
    reader.execute("COMMIT")
    assert reader.execute("SELECT COUNT(*) FROM paths").fetchone()[0] == 19
    reader.close()
    assert dump(db) == full_v2


@pytest.mark.slow
def test_the_workflow_updates_the_catalog_in_place_and_equals_a_full_rebuild(tmp_path, tiny_images):
    """Real Snakemake runs: after an image is edited, one added and one removed, the catalog
    job updates the same file (Snakemake's delete undone by the second name), loads only the
    shards whose files changed, keeps the reviews, makes no backup copy, and ends equal to a
    full rebuild from the same cache."""
    from shardlens.shards import shard_names, shard_of
    from shardlens.stages import SHARD_STAGES

    from conftest import snakemake, text_image, write_config

    workdir = tmp_path / "run"
    write_config(workdir, images=str(tiny_images), shards={"count": 3})
    snakemake(workdir, "--cores", "2")
    db = workdir / "results" / "annotations.sqlite"
    store = workdir / "reviews" / "reviews.sqlite"
    assert os.path.samefile(db, keep_path(db))
    inode = db.stat().st_ino
    conn = sqlite3.connect(db)
    line = conn.execute("SELECT image_id, line_no FROM ocr_lines o JOIN paths p USING (image_id) WHERE p.path = 'sub/street.png' ORDER BY line_no").fetchone()
    conn.close()
    record_reviews([Review(line[0], None, line[1], "relabeled", "Main St.", reviewer="ann")], db, store, "test")
    clusters_before = {r["cluster_id"]: r for r in read_jsonl(workdir / "cache" / "clusters.jsonl", "cluster") if r["cluster_id"] >= 0}

    text_image(["CLOSED ON SUNDAY"]).save(tiny_images / "open.png")  # edited
    text_image(["NEW ARRIVALS"]).save(tiny_images / "sub" / "new.png")  # added
    (tiny_images / "broken.jpg").unlink()  # removed
    names = shard_names(3)
    changed = sorted({names[shard_of(p, 3)] for p in ("open.png", "sub/new.png", "broken.jpg")})
    snakemake(workdir, "--cores", "2")

    assert db.stat().st_ino == inode and os.path.samefile(db, keep_path(db))
    summaries = [json.loads(l) for l in (workdir / "logs" / "catalog.log").read_text().splitlines() if l.startswith("{")]
    assert summaries[-1]["stage"] == "catalog"
    assert summaries[-1]["extra"] == {"mode": "incremental", "shards_loaded": len(changed), "shards_unchanged": 3 - len(changed), "shards_removed": 0}
    assert not (workdir / ".snakemake" / "backups").exists()
    conn = sqlite3.connect(db)
    assert {r[0] for r in conn.execute("SELECT path FROM paths")} >= {"sub/new.png", "open.png"}
    assert conn.execute("SELECT COUNT(*) FROM paths WHERE path = 'broken.jpg'").fetchone()[0] == 0
    assert conn.execute("SELECT final_label FROM final_annotations WHERE image_id = ? AND line_no = ?", line).fetchone()[0] == "Main St."
    conn.close()
    # the manifest digests only the changed shards' files (listing + five stages) and the clusters
    manifest_log = [json.loads(l) for l in (workdir / "logs" / "manifest.log").read_text().splitlines() if l.startswith("{")]
    per_shard = len(SHARD_STAGES) + 1  # its listing and each stage's file
    assert manifest_log[-1]["extra"]["files_digested"] <= per_shard * len(changed) + 1
    assert manifest_log[-1]["extra"]["digests_reused"] >= per_shard * (3 - len(changed))
    # the clusters: only the changed shards' embeddings read; a cluster whose texts are all
    # still there keeps its id and its name (the cluster rule's state, labels.refit auto)
    cluster_log = [json.loads(l) for l in (workdir / "logs" / "cluster.log").read_text().splitlines() if l.startswith("{")]
    assert 1 <= cluster_log[-1]["extra"]["embedding_files_read"] <= len(changed)
    after = {r["cluster_id"]: r for r in read_jsonl(workdir / "cache" / "clusters.jsonl", "cluster")}
    texts_now = {m["text"] for r in after.values() for m in r["members"]}
    assert clusters_before
    for cluster_id, cluster in clusters_before.items():
        members = {m["text"] for m in cluster["members"]}
        if members <= texts_now:
            assert after[cluster_id]["label"] == cluster["label"], (cluster, after.get(cluster_id))
            assert members <= {m["text"] for m in after[cluster_id]["members"]}
    fresh = tmp_path / "fresh.sqlite"
    stats = import_cache(workdir / "cache", fresh, reviews_db=store, **QUIET)
    assert stats["mode"] == "new"
    assert dump(db) == dump(fresh)
