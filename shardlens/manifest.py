"""The cache manifest: what produced the cache, over which images, with a digest of every file."""

from __future__ import annotations

import hashlib
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import __version__
from .records import SCHEMA_VERSION, file_digest, read_jsonl, schema_hash, validate_record, write_json
from .stages import AGGREGATES, SHARD_STAGES

PHASE = 2
TOOL_PACKAGES = (
    "snakemake", "numpy", "pillow", "onnxruntime", "opencv-python-headless", "rapidocr",
    "lingua-language-detector", "jsonschema", "torch", "transformers", "sentence-transformers",
    "scikit-learn", "hdbscan",
)


def dataset_digest(ingest_files: list[Path]) -> str:
    """sha256 over the sorted (image_id, path) pairs of every readable file."""
    pairs = sorted(
        (r["image_id"], r["path"])
        for f in ingest_files
        for r in read_jsonl(f, "ingest", validate=False)
        if r["image_id"] is not None
    )
    digest = hashlib.sha256()
    for image_id, path in pairs:
        digest.update(f"{image_id}\t{path}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "shardlens": __version__}
    for name in TOOL_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def build_manifest(cache_dir: str | Path, shards: list[str], models: dict[str, dict], stages: list[str] | None = None) -> dict:
    """Collect digests of ``cache/{stage}/{shard}.jsonl`` for every stage and shard."""
    cache_dir = Path(cache_dir)
    stages = stages or list(SHARD_STAGES)
    shard_files: dict[str, dict] = {}
    counts = {"shards": len(shards)}
    for shard in shards:
        entry = {}
        for stage in stages:
            path = cache_dir / stage / f"{shard}.jsonl"
            sha, lines = file_digest(path)
            entry[stage] = {"file": f"{stage}/{shard}.jsonl", "sha256": sha, "records": lines}
            counts[f"{stage}_records"] = counts.get(f"{stage}_records", 0) + lines
        shard_files[shard] = entry
    aggregates = {}
    for name in AGGREGATES:
        path = cache_dir / f"{name}.jsonl"
        if path.exists():
            sha, lines = file_digest(path)
            aggregates[name] = {"file": f"{name}.jsonl", "sha256": sha, "records": lines}
    manifest = {
        "phase": PHASE,
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "models": models,
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "schema_hash": schema_hash(),
        "dataset_digest": dataset_digest([cache_dir / "ingest" / f"{s}.jsonl" for s in shards]),
        "stages": stages,
        "shards": shard_files,
        "aggregates": aggregates,
        "tools": tool_versions(),
        "counts": counts,
    }
    validate_record("manifest", manifest, where="manifest")
    return manifest


def write_manifest(path: str | Path, manifest: dict) -> None:
    write_json(path, manifest)


def run_manifest(output: str | Path, shards: list[str], models: dict[str, dict]) -> dict:
    """The manifest rule: digest the cache beside ``output`` and write the manifest atomically."""
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="manifest", images=0)
    manifest = build_manifest(Path(output).parent, shards, models)
    write_manifest(output, manifest)
    summary.images = summary.ok = manifest["counts"].get("ingest_records", 0)
    summary.records = len(manifest["shards"])
    summary.extra = {"dataset_digest": manifest["dataset_digest"][:16], "schema_hash": manifest["schema_hash"][:16]}
    return summary.finish()
