"""The cache manifest: what produced the cache (models, each stage's parameters, the whole
config's digest, the shard plan), over which images, with a digest of every file; and the
manifest history that ``shardlens diff`` compares (cache/manifests/, see :func:`record_history`)."""

from __future__ import annotations

import gzip
import hashlib
import json
import platform
import re
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import __version__
from .atomic import atomic_open
from .digest_cache import DIGESTS_FILE, DigestCache, combine_shares
from .records import SCHEMA_VERSION, schema_hash, validate_record, write_json
from .stages import AGGREGATES, SHARD_STAGES
from .stages.params import all_stage_params

PHASE = 2
TOOL_PACKAGES = (
    "snakemake",
    "numpy",
    "pillow",
    "onnxruntime",
    "opencv-python-headless",
    "rapidocr",
    "lingua-language-detector",
    "jsonschema",
    "torch",
    "transformers",
    "sentence-transformers",
    "scikit-learn",
    "hdbscan",
)


def dataset_digest(ingest_files: list[Path], digests: DigestCache | None = None) -> str:
    """The digest of the (image_id, path) pairs of every readable file, whatever the sharding:
    the sum modulo 2**256 of each pair's sha256 (:func:`digest_cache.dataset_share`), so a
    changed shard costs reading that shard only."""
    digests = digests or DigestCache(None)
    return combine_shares([digests.share(f) for f in ingest_files])


def canonical_json(value) -> str:
    """One spelling of a JSON value: keys sorted, compact (equal values give equal digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def config_digest(config: dict) -> str:
    """sha256 over the canonical JSON of the whole effective config (defaults applied)."""
    return hashlib.sha256(canonical_json(config).encode("utf-8", "surrogateescape")).hexdigest()


def shard_plan_entry(cache_dir: Path, shards: list[str], config: dict, shard_count: int | None, digests: DigestCache | None = None) -> dict:
    """The shard plan: how the count was chosen, and a digest of every shard's listing
    (``cache/shards/{shard}.tsv``: path, size, mtime_ns of its images)."""
    digests = digests or DigestCache(None)
    listings = {}
    for shard in shards:
        path = cache_dir / "shards" / f"{shard}.tsv"
        if path.exists():  # tools that run the stages without Snakemake may write no listing
            sha, lines = digests.digest(path)
            listings[shard] = {"file": f"shards/{shard}.tsv", "sha256": sha, "records": max(0, lines - 1)}
    digest = hashlib.sha256()
    for shard, info in sorted(listings.items()):
        digest.update(f"{shard}\t{info['sha256']}\n".encode())
    return {
        "count": shard_count,
        "configured": {"count": config["shards"]["count"], "size": config["shards"]["size"]},
        "shards": len(shards),
        "images": sum(info["records"] for info in listings.values()),
        "listings_digest": digest.hexdigest(),
        "listings": listings,
    }


def tool_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "shardlens": __version__}
    for name in TOOL_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def build_manifest(
    cache_dir: str | Path,
    shards: list[str],
    models: dict[str, dict],
    stages: list[str] | None = None,
    config: dict | None = None,
    shard_count: int | None = None,
    digests: DigestCache | None = None,
) -> dict:
    """Collect digests of ``cache/{stage}/{shard}.jsonl`` for every stage and shard, with each
    stage's parameters as its rule receives them (from ``config``: the validated config of the
    run; the defaults when None) and the shard plan."""
    cache_dir = Path(cache_dir)
    if config is None:
        from .config import load_config

        config = load_config()
    stages = stages or list(SHARD_STAGES)
    digests = digests or DigestCache(None)
    shard_files: dict[str, dict] = {}
    counts = {"shards": len(shards)}
    for shard in shards:
        entry = {}
        for stage in stages:
            path = cache_dir / stage / f"{shard}.jsonl"
            sha, lines = digests.digest(path)
            entry[stage] = {"file": f"{stage}/{shard}.jsonl", "sha256": sha, "records": lines}
            counts[f"{stage}_records"] = counts.get(f"{stage}_records", 0) + lines
        shard_files[shard] = entry
    aggregates = {}
    for name in AGGREGATES:
        path = cache_dir / f"{name}.jsonl"
        if path.exists():
            sha, lines = digests.digest(path)
            aggregates[name] = {"file": f"{name}.jsonl", "sha256": sha, "records": lines}
    manifest = {
        "phase": PHASE,
        "version": __version__,
        "schema_version": SCHEMA_VERSION,
        "models": models,
        "generated_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "schema_hash": schema_hash(),
        "dataset_digest": dataset_digest([cache_dir / "ingest" / f"{s}.jsonl" for s in shards], digests),
        "stages": stages,
        # JSON round trip: the values as the manifest file holds them (tuples become lists)
        "params": json.loads(canonical_json(all_stage_params(config))),
        "config_digest": config_digest(config),
        "shard_plan": shard_plan_entry(cache_dir, shards, config, shard_count, digests),
        "shards": shard_files,
        "aggregates": aggregates,
        "tools": tool_versions(),
        "counts": counts,
    }
    validate_record("manifest", manifest, where="manifest")
    return manifest


def write_manifest(path: str | Path, manifest: dict) -> None:
    write_json(path, manifest)


HISTORY_NAME = re.compile(r"^(\d{6})-(\d{8}T\d{6}Z)\.json$")


def history_entries(history_dir: str | Path) -> list[Path]:
    """The manifests of the history, oldest first (``NNNNNN-YYYYMMDDTHHMMSSZ.json``)."""
    folder = Path(history_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if HISTORY_NAME.match(p.name))


def listing_copy(history_dir: str | Path, sha256: str) -> Path:
    """Where the history keeps the listing with this digest (gzip, written once)."""
    return Path(history_dir) / "listings" / f"{sha256}.tsv.gz"


def record_history(manifest_path: str | Path, history_dir: str | Path) -> Path:
    """Append the manifest just written to the history, and keep a copy of every shard listing
    it names that the history lacks (content-addressed, so an unchanged shard costs nothing).

    The history is not a declared output of the manifest rule: Snakemake deletes a job's
    declared outputs before it runs (``update()`` would copy the whole folder aside on every
    run instead), and this folder must outlive every run. Entries are written once, atomically,
    and never rewritten; the newest entry is the manifest.json of the same run, byte for byte.
    """
    manifest_path, history_dir = Path(manifest_path), Path(history_dir)
    data = manifest_path.read_bytes()
    manifest = json.loads(data)
    cache_dir = manifest_path.parent
    for info in manifest.get("shard_plan", {}).get("listings", {}).values():
        target = listing_copy(history_dir, info["sha256"])
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = (cache_dir / info["file"]).read_bytes()
        if hashlib.sha256(source).hexdigest() != info["sha256"]:
            raise ValueError(f"{cache_dir / info['file']} changed while the manifest was written; run the workflow again")
        with atomic_open(target, "wb") as handle:
            handle.write(gzip.compress(source, mtime=0))
    entries = history_entries(history_dir)
    number = int(HISTORY_NAME.match(entries[-1].name).group(1)) + 1 if entries else 1
    stamp = datetime.fromisoformat(manifest["generated_at"]).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    entry = history_dir / f"{number:06d}-{stamp}.json"
    with atomic_open(entry, "wb") as handle:
        handle.write(data)
    return entry


def run_manifest(
    cache_dir: str | Path,
    output: str | Path,
    shards: list[str],
    models: dict[str, dict],
    config: dict | None = None,
    shard_count: int | None = None,
    history: str | Path | None = None,
) -> dict:
    """The manifest rule: digest the cache in ``cache_dir``, write the manifest to ``output``
    atomically, then append it to the ``history`` folder (when given)."""
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="manifest", images=0)
    digests = DigestCache(Path(history) / DIGESTS_FILE if history is not None else None)
    manifest = build_manifest(cache_dir, shards, models, config=config, shard_count=shard_count, digests=digests)
    digests.close()
    write_manifest(output, manifest)
    entry = record_history(output, history) if history is not None else None
    summary.images = summary.ok = manifest["counts"].get("ingest_records", 0)
    summary.records = len(manifest["shards"])
    summary.extra = {
        "dataset_digest": manifest["dataset_digest"][:16],
        "schema_hash": manifest["schema_hash"][:16],
        "files_digested": digests.read,
        "digests_reused": digests.reused,
    }
    if entry is not None:
        summary.extra["history"] = str(entry)
    return summary.finish()
