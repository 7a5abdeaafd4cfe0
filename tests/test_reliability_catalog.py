"""Catalog integrity: imports are all-or-nothing (an exception or a SIGKILL mid-import leaves the
previous catalog), idempotent, safe with two importers at once, refuse unknown cache versions
with the list of versions they read, and read a phase-1 cache through its adapter.

The caches here are synthetic (records written with the real writer, a real manifest), so no
model runs and the tests take seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shardlens import catalog
from shardlens.adapters.phase1 import PHASE1_SCHEMA_HASH
from shardlens.catalog import SCHEMA_ADAPTERS, CatalogError, build_catalog, import_cache
from shardlens.manifest import build_manifest, write_manifest
from shardlens.records import SCHEMA_VERSION, file_digest, schema_hash, write_jsonl
from shardlens.shard_versions import TRACKING_TABLES

STAGES = ["ingest", "gate", "ocr"]
REPO = Path(__file__).resolve().parents[1]


def synthetic_cache(folder: Path, version: str, shards: int = 6, per_shard: int = 20) -> Path:
    """A cache of ``shards`` shards; every OCR text carries ``version`` so v1 and v2 differ in
    every shard."""
    names = [f"{i:04d}" for i in range(shards)]
    for shard in names:
        ingest, gate, ocr = [], [], []
        for j in range(per_shard):
            image_id = hashlib.sha256(f"{shard}/{j}".encode()).hexdigest()
            ingest.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "image_id": image_id,
                    "path": f"s{shard}/img{j:03d}.png",
                    "bytes": 100 + j,
                    "width": 64,
                    "height": 48,
                    "format": "PNG",
                    "phash": None,
                    "status": "ok",
                    "error": None,
                    "error_detail": None,
                }
            )
            gate.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "image_id": image_id,
                    "has_text": True,
                    "score": 0.9,
                    "decision": "ocr",
                    "skip_reason": None,
                    "text_regions": 1,
                    "gate_version": "test-gate",
                }
            )
            ocr.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "image_id": image_id,
                    "line_no": 0,
                    "region_id": None,
                    "text": f"{version} text {shard} {j}",
                    "confidence": 0.9,
                    "language": None,
                    "language_confidence": None,
                    "bbox": [1.0, 2.0, 30.0, 12.0],
                    "source": "test",
                }
            )
        for stage, records in zip(STAGES, (ingest, gate, ocr)):
            write_jsonl(folder / stage / f"{shard}.jsonl", stage, records)
    write_manifest(folder / "manifest.json", build_manifest(folder, names, {}, stages=STAGES))
    return folder


def dump(db: Path, skip: tuple[str, ...] = ()) -> dict:
    """Every table row for row, but ``skip`` and the change tracking (how the catalog got here)."""
    conn = sqlite3.connect(db)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    out = {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables if t not in (*skip, *TRACKING_TABLES)}
    conn.close()
    return out


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    base = tmp_path_factory.mktemp("caches")
    return synthetic_cache(base / "v1", "v1"), synthetic_cache(base / "v2", "v2")


@pytest.fixture(scope="module")
def fresh_v2(caches, tmp_path_factory):
    db = tmp_path_factory.mktemp("fresh") / "v2.sqlite"
    import_cache(caches[1], db, log=lambda m: None)
    return dump(db, skip=("runs",))


def test_import_is_idempotent(caches, tmp_path):
    db = tmp_path / "c.sqlite"
    first = import_cache(caches[0], db, log=lambda m: None)
    assert first["shards_loaded"] == 6
    before = dump(db)
    second = import_cache(caches[0], db, log=lambda m: None)
    assert (second["shards_loaded"], second["shards_unchanged"], second["rows"]) == (0, 6, 0)
    assert dump(db) == before


def test_an_error_mid_import_leaves_the_previous_catalog(caches, fresh_v2, tmp_path, monkeypatch):
    db = tmp_path / "c.sqlite"
    import_cache(caches[0], db, log=lambda m: None)
    before = dump(db)
    real_row = catalog.load._row
    seen_shards: set[str] = set()

    def failing_row(kind, shard, record, columns):
        seen_shards.add(shard)
        if len(seen_shards) == 4:  # three shards replaced, the fourth fails half-way
            raise RuntimeError("injected failure while loading shard " + shard)
        return real_row(kind, shard, record, columns)

    monkeypatch.setattr(catalog.load, "_row", failing_row)
    with pytest.raises(RuntimeError, match="injected failure"):
        import_cache(caches[1], db, log=lambda m: None)
    assert dump(db) == before and integrity(db) == "ok"
    monkeypatch.setattr(catalog.load, "_row", real_row)
    stats = import_cache(caches[1], db, log=lambda m: None)
    assert stats["shards_loaded"] == 6
    assert dump(db, skip=("runs",)) == fresh_v2


SLOW_IMPORT = """
import sys, time
from pathlib import Path
from shardlens import catalog
cache, db, marker, entry = sys.argv[1:5]
real = catalog.load._load_shard
loaded = []
def slow(*args, **kwargs):
    n = real(*args, **kwargs)
    loaded.append(args[2])
    if len(loaded) == 3:  # three shards written inside the open transaction: stop here
        Path(marker).write_text(",".join(loaded))
        time.sleep(120)
    return n
catalog.load._load_shard = slow
if entry == "import":
    catalog.import_cache(cache, db, log=lambda m: None)
else:
    catalog.build_catalog(cache, db, log=lambda m: None)
"""


def _kill_mid_import(cache: Path, db: Path, tmp_path: Path, entry: str) -> None:
    marker = tmp_path / f"marker-{entry}"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_IMPORT, str(cache), str(db), str(marker), entry], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, f"the import ended before it could be killed ({proc.returncode})"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_a_killed_import_leaves_the_previous_catalog_and_a_rerun_completes(caches, fresh_v2, tmp_path):
    db = tmp_path / "c.sqlite"
    import_cache(caches[0], db, log=lambda m: None)
    before = dump(db)
    _kill_mid_import(caches[1], db, tmp_path, "import")
    assert integrity(db) == "ok"
    assert dump(db) == before  # nothing of v2, not even the three shards it had written
    stats = import_cache(caches[1], db, log=lambda m: None)
    assert stats["shards_loaded"] == 6
    assert dump(db, skip=("runs",)) == fresh_v2


def test_a_killed_catalog_build_leaves_the_previous_database(caches, fresh_v2, tmp_path):
    """The catalog rule updates the database in place in one transaction: a kill leaves the old
    catalog and no file of its own beside it (SQLite's -wal and -shm aside)."""
    db = tmp_path / "results" / "annotations.sqlite"
    build_catalog(caches[0], db, log=lambda m: None)
    before = dump(db)
    _kill_mid_import(caches[1], db, tmp_path, "build")
    assert dump(db) == before and integrity(db) == "ok"
    assert {p.name for p in db.parent.iterdir()} <= {db.name, f".{db.name}.keep", f"{db.name}-wal", f"{db.name}-shm"}
    build_catalog(caches[1], db, log=lambda m: None)
    assert dump(db, skip=("runs",)) == fresh_v2
    assert sorted(p.name for p in db.parent.iterdir()) == [f".{db.name}.keep", db.name]


CONCURRENT_IMPORT = """
import os, sys, time
from shardlens.catalog import import_cache
ready, go = sys.argv[3], sys.argv[4]
open(ready, "w").close()
while not os.path.exists(go):  # both importers start together
    time.sleep(0.005)
stats = import_cache(sys.argv[1], sys.argv[2], log=lambda m: None)
print(stats["shards_loaded"], stats["shards_unchanged"])
"""


def test_two_imports_at_once_do_not_corrupt_the_catalog(tmp_path):
    big1 = synthetic_cache(tmp_path / "big1", "v1", shards=12, per_shard=100)
    big2 = synthetic_cache(tmp_path / "big2", "v2", shards=12, per_shard=100)
    alone = {}
    for name, cache in (("v1", big1), ("v2", big2)):
        import_cache(cache, tmp_path / f"alone-{name}.sqlite", log=lambda m: None)
        alone[name] = dump(tmp_path / f"alone-{name}.sqlite", skip=("runs",))

    def run_two(first: Path, second: Path, db: Path) -> list[str]:
        go = db.with_suffix(".go")
        ready = [db.with_suffix(f".ready{i}") for i in range(2)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CONCURRENT_IMPORT, str(c), str(db), str(r), str(go)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for c, r in zip((first, second), ready)
        ]
        while not all(r.exists() for r in ready):
            assert all(p.poll() is None for p in procs)
            time.sleep(0.01)
        go.touch()
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
        return [out.strip() for out, _ in outs]

    # the same cache twice into a new database: one loads it, the other finds it loaded
    db = tmp_path / "same.sqlite"
    results = run_two(big1, big1, db)
    assert sorted(results) == ["0 12", "12 0"]
    assert integrity(db) == "ok" and dump(db, skip=("runs",)) == alone["v1"]
    # two different caches at once: the catalog ends as one of them, whole, never a mix
    db = tmp_path / "mixed.sqlite"
    run_two(big1, big2, db)
    assert integrity(db) == "ok"
    assert dump(db, skip=("runs",)) in (alone["v1"], alone["v2"])
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2
    conn.close()


def test_truncated_cache_file_is_named_with_what_to_do(caches, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(caches[0], cache)
    target = cache / "ocr" / "0002.jsonl"
    stat = target.stat()
    lines = target.read_bytes().splitlines(keepends=True)
    target.write_bytes(b"".join(lines[:-1]))  # cut at a line boundary: still valid JSON Lines
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the time stamp kept
    with pytest.raises(CatalogError) as err:
        import_cache(cache, tmp_path / "c.sqlite", log=lambda m: None)
    message = str(err.value)
    assert f"{target}: 19 lines" in message and "manifest recorded 20 lines" in message
    assert f"run `snakemake --cores all --forcerun {target}`" in message


def test_unknown_schema_hash_is_refused_listing_the_versions_read(caches, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(caches[0], cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["schema_hash"] = "e" * 64
    (cache / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CatalogError) as err:
        import_cache(cache, tmp_path / "c.sqlite", log=lambda m: None)
    message = str(err.value)
    assert "schema_hash eeeeeeeeeeee is not one this shardlens reads" in message
    assert f"{schema_hash()[:12]} (current, schema_version {SCHEMA_VERSION})" in message
    assert f"{PHASE1_SCHEMA_HASH[:12]} (phase1: " in message
    assert not (tmp_path / "c.sqlite").exists() or dump(tmp_path / "c.sqlite")["paths"] == []


def test_a_manifest_cannot_point_the_importer_outside_the_cache(caches, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(caches[0], cache)
    manifest = json.loads((cache / "manifest.json").read_text())
    for bad in ("../../etc/hostname", "/etc/hostname"):
        manifest["shards"]["0001"]["ingest"]["file"] = bad
        (cache / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(CatalogError, match=r"shard 0001 names .* which is not inside the cache; refusing to read it"):
            import_cache(cache, tmp_path / "c.sqlite", log=lambda m: None)


# --- the phase-1 adapter --------------------------------------------------------------------------


def phase1_cache(folder: Path, ocr_lines: list[dict] | None = None) -> Path:
    """A cache in the phase-1 layout defined in shardlens/adapters/phase1.py."""
    a, b = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    ingest = [
        {"sha256": a, "file": "shop/sign.jpg", "size": 2048, "w": 640, "h": 480, "fmt": "jpeg", "ok": True, "reason": None, "message": None},
        {"sha256": a, "file": "copy of sign.jpg", "size": 2048, "w": 640, "h": 480, "fmt": "jpeg", "ok": True, "reason": None, "message": None},
        {
            "sha256": b,
            "file": "broken.png",
            "size": 10,
            "w": None,
            "h": None,
            "fmt": None,
            "ok": False,
            "reason": "truncated",
            "message": "image file is truncated",
        },
        {"sha256": None, "file": "gone.jpg", "size": None, "w": None, "h": None, "fmt": None, "ok": False, "reason": "missing", "message": None},
        {"sha256": None, "file": "odd.jpg", "size": None, "w": None, "h": None, "fmt": None, "ok": False, "reason": "nfs_stale", "message": "stale handle"},
    ]
    ocr = (
        ocr_lines
        if ocr_lines is not None
        else [
            {"sha256": a, "idx": 0, "text": "OPEN LATE", "score": 0.97, "box": [[10, 20], [200, 22], [199, 60], [9, 58]], "lang": "en"},
            {"sha256": a, "idx": 1, "text": "24h", "score": 0.88, "box": [[10, 70], [60, 70], [60, 90], [10, 90]], "lang": "en"},
        ]
    )
    files = {}
    for stage, records in (("ingest", ingest), ("ocr", ocr)):
        path = folder / stage / "0000.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        sha, lines = file_digest(path)
        files[stage] = {"path": f"{stage}/0000.jsonl", "sha256": sha, "lines": lines}
    manifest = {
        "phase": 1,
        "version": "0.4.2",
        "generated_at": "2026-06-01T12:00:00+00:00",
        "schema_hash": PHASE1_SCHEMA_HASH,
        "dataset_digest": hashlib.sha256(b"phase1").hexdigest(),
        "files": {"0000": files},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_registry_has_the_current_version_and_one_adapter_per_older_one():
    assert SCHEMA_ADAPTERS[schema_hash()] is None
    older = {h: a for h, a in SCHEMA_ADAPTERS.items() if a is not None}
    assert [a.name for a in older.values()] == ["phase1", "pre-outlier-scores"]
    assert all(h == a.schema_hash for h, a in older.items())


def test_a_phase1_cache_is_read_through_its_adapter(tmp_path):
    cache = phase1_cache(tmp_path / "cache")
    db = tmp_path / "c.sqlite"
    stats = import_cache(cache, db, log=lambda m: None)
    assert stats["shards_loaded"] == 1
    conn = sqlite3.connect(db)
    paths = conn.execute("SELECT path, status, error, error_detail, width, height, format, bytes FROM paths ORDER BY path").fetchall()
    assert paths == [
        ("broken.png", "error", "truncated", "image file is truncated", None, None, None, 10),
        ("copy of sign.jpg", "ok", None, None, 640, 480, "JPEG", 2048),
        ("gone.jpg", "error", "not_found", "missing", None, None, None, None),
        ("odd.jpg", "error", "io_error", "phase-1 reason 'nfs_stale': stale handle", None, None, None, None),
        ("shop/sign.jpg", "ok", None, None, 640, 480, "JPEG", 2048),
    ]
    lines = conn.execute("SELECT line_no, text, confidence, bbox, language, language_confidence, source FROM ocr_lines ORDER BY line_no").fetchall()
    assert lines == [
        (0, "OPEN LATE", 0.97, "[9.0,20.0,200.0,60.0]", "en", None, "paddleocr (phase-1 cache)"),
        (1, "24h", 0.88, "[10.0,70.0,60.0,90.0]", None, None, "paddleocr (phase-1 cache)"),  # too short to keep a language
    ]
    assert conn.execute("SELECT n_paths FROM images WHERE path = 'copy of sign.jpg'").fetchone()[0] == 2
    assert conn.execute("SELECT schema_hash FROM runs").fetchone()[0] == PHASE1_SCHEMA_HASH
    assert conn.execute("SELECT final_label FROM image_labels WHERE path = 'copy of sign.jpg'").fetchone()[0] == "OPEN LATE"
    conn.close()
    again = import_cache(cache, db, log=lambda m: None)
    assert (again["shards_loaded"], again["shards_unchanged"]) == (0, 1)


def test_a_phase1_record_that_does_not_upgrade_is_named(tmp_path):
    cache = phase1_cache(tmp_path / "cache", ocr_lines=[{"sha256": "a" * 64, "idx": 0, "text": "X", "score": 1.7, "box": [[0, 0], [1, 1]], "lang": None}])
    with pytest.raises(CatalogError, match=r"ocr/0000\.jsonl: cannot be loaded .*line 1 \(read through the phase1 adapter\).*confidence"):
        import_cache(cache, tmp_path / "c.sqlite", log=lambda m: None)
