"""Manifest and SQLite catalog built from a real cache made by the stage functions."""

from __future__ import annotations

import json
import sqlite3

import pytest

from shardlens.catalog import CatalogError, import_cache
from shardlens.config import load_config
from shardlens.images.decoding import Limits
from shardlens.images.listing import list_images
from shardlens.manifest import build_manifest, write_manifest
from shardlens.models.registry import models_for_config
from shardlens.options import GateOptions, OCROptions
from shardlens.shards import plan_shards, write_listings
from shardlens.stages import gate, ingest, ocr

from conftest import text_image


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cat")
    root = tmp / "images"
    root.mkdir()
    text_image(["EXIT"]).save(root / "exit.png")
    text_image(["Hello there"]).save(root / "hello.png")
    (root / "dup.png").write_bytes((root / "exit.png").read_bytes())
    (root / "bad.png").write_bytes(b"nope")
    plan = plan_shards(list_images(root), 2)
    cache = tmp / "cache"
    write_listings(plan, cache / "shards")
    for shard in plan.names:
        ingest.run_shard(cache / "shards" / f"{shard}.tsv", root, cache / "ingest" / f"{shard}.jsonl", shard, Limits.from_values(), allow_outside_root=False)
        gate.run(cache / "ingest" / f"{shard}.jsonl", root, cache / "gate" / f"{shard}.jsonl", shard, GateOptions.from_values(), 1, Limits.from_values())
        ocr.run(
            cache / "ingest" / f"{shard}.jsonl",
            cache / "gate" / f"{shard}.jsonl",
            root,
            cache / "ocr" / f"{shard}.jsonl",
            shard,
            OCROptions.from_values(),
            1,
            Limits.from_values(),
        )
    manifest = build_manifest(cache, plan.names, models_for_config(load_config()), stages=["ingest", "gate", "ocr"])
    write_manifest(cache / "manifest.json", manifest)
    return cache


def dump(db) -> dict:
    conn = sqlite3.connect(db)
    out = {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in ("paths", "gate", "ocr_lines", "shard_files")}
    conn.close()
    return out


def test_manifest_is_deterministic_and_complete(cache):
    manifest = json.loads((cache / "manifest.json").read_text())
    again = build_manifest(cache, sorted(manifest["shards"]), manifest["models"], stages=manifest["stages"])
    for key in ("dataset_digest", "schema_hash", "models", "shards"):
        assert again[key] == manifest[key]
    assert manifest["phase"] == 2 and manifest["counts"]["ingest_records"] == 4
    assert {"text_gate", "ocr", "ocr_language", "detector", "text_embedder"} <= set(manifest["models"])
    assert all(len(sha) == 64 for m in manifest["models"].values() for sha in m["files"].values())


def test_import_is_idempotent_and_incremental(cache, tmp_path):
    db = tmp_path / "a.sqlite"
    first = import_cache(cache, db, log=lambda m: None)
    assert first["shards_loaded"] >= 1 and first["rows"] > 0
    rows = dump(db)
    second = import_cache(cache, db, log=lambda m: None)
    assert second["shards_loaded"] == 0 and second["shards_unchanged"] == first["shards_loaded"]
    assert dump(db) == rows
    conn = sqlite3.connect(db)
    assert {r[0] for r in conn.execute("SELECT text FROM ocr_lines")} == {"EXIT", "Hello there"}
    assert conn.execute("SELECT n_paths FROM images WHERE path = 'dup.png'").fetchone()[0] == 2
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_truncated_cache_file_is_refused_and_db_unchanged(cache, tmp_path):
    db = tmp_path / "b.sqlite"
    import_cache(cache, db, log=lambda m: None)
    before = dump(db)
    broken = tmp_path / "cache"
    import shutil

    shutil.copytree(cache, broken)
    target = sorted((broken / "ingest").glob("*.jsonl"))[0]
    target.write_bytes(target.read_bytes()[:-20])
    with pytest.raises(CatalogError, match=r"ingest/\d+\.jsonl: .*truncated or changed after the manifest"):
        import_cache(broken, db, log=lambda m: None)
    assert dump(db) == before


def test_unknown_schema_hash_is_refused(cache, tmp_path):
    import shutil

    other = tmp_path / "cache"
    shutil.copytree(cache, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["schema_hash"] = "f" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CatalogError, match="schema_hash ffffffffffff is not one this shardlens reads"):
        import_cache(other, tmp_path / "c.sqlite", log=lambda m: None)


def test_cli_import_cache(cache, tmp_path):
    from typer.testing import CliRunner

    from shardlens.cli import app

    result = CliRunner().invoke(app, ["import-cache", str(cache), str(tmp_path / "d.sqlite")])
    assert result.exit_code == 0, result.output
    assert "shards loaded" in result.output
    result = CliRunner().invoke(app, ["import-cache", str(tmp_path / "nocache"), str(tmp_path / "d.sqlite")])
    assert result.exit_code == 2 and "manifest.json does not exist" in result.output


def test_a_catalog_of_the_old_cluster_layout_gets_the_current_views(tmp_path):
    """A catalog written before clusters kept their item group: its cluster tables and views
    (which named items by their cluster) are derived, so opening it replaces them."""
    from shardlens.catalog import connect

    db = tmp_path / "old.sqlite"
    old = sqlite3.connect(db)
    old.executescript(
        """
        CREATE TABLE clusters (cluster_id INTEGER PRIMARY KEY, label TEXT NOT NULL, keywords TEXT NOT NULL, size INTEGER NOT NULL);
        CREATE TABLE cluster_members (text TEXT PRIMARY KEY, cluster_id INTEGER NOT NULL, kinds TEXT NOT NULL, count INTEGER NOT NULL, probability REAL NOT NULL);
        CREATE TABLE aggregate_files (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL, records INTEGER NOT NULL);
        INSERT INTO aggregate_files VALUES ('clusters', 'x', 1);
        CREATE VIEW item_annotations AS SELECT 'renamed by its cluster' AS machine_label;
        """
    )
    old.close()
    conn = connect(db)
    assert {r[1] for r in conn.execute("PRAGMA table_info(cluster_members)")} >= {"item", "text"}
    assert "r.caption AS machine_label" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'item_annotations'").fetchone()[0]
    assert conn.execute("SELECT COUNT(*) FROM aggregate_files").fetchone()[0] == 0  # the clusters load again
    conn.close()
