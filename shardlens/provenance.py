"""What changed between two runs, and why shards re-ran: ``shardlens diff``.

Two manifests (cache/manifest.json, or entries of the history cache/manifests/ that the manifest
rule appends to) are compared field by field:

- images added, removed and changed, from the shard listings (path, size, mtime_ns): the
  manifest holds each listing's digest, and the history keeps one gzip copy of each listing
  version (cache/manifests/listings/{sha256}.tsv.gz), so only the listings whose digest differs
  are read. "Changed" means the same path with another size or mtime: what Snakemake sees, and
  what re-runs the shard. The manifest itself stays one entry per shard, not per image.
- models changed (which file, old and new sha256), parameters changed per stage (dotted keys
  into the values the rules' params hold), the config digest, the shard plan, tool versions;
- every shard whose listing or outputs differ, with the differing stages and their causes: a
  new or removed shard, its listing, the parameters or the model of a stage whose output
  differs; a stage whose own inputs did not change follows from the earlier stages that differ.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from .manifest import history_entries, listing_copy
from .stages import SHARD_STAGES

REQUIRED = ("generated_at", "schema_hash", "models", "shards")
MISSING = object()


class ProvenanceError(ValueError):
    """A manifest that cannot be compared (missing, not a manifest, no second run): one line."""


def read_manifest_file(path: str | Path) -> dict:
    """A manifest as JSON, or :class:`ProvenanceError` naming the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise ProvenanceError(f"{path}: no such manifest (run `snakemake` first: the manifest rule writes it)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProvenanceError(f"{path}: not a manifest (not valid JSON: {exc})") from None
    if not isinstance(data, dict) or any(key not in data for key in REQUIRED):
        missing = [key for key in REQUIRED if not isinstance(data, dict) or key not in data]
        raise ProvenanceError(f"{path}: not a manifest (no {', '.join(missing)})")
    if not isinstance(data["shards"], dict) or not isinstance(data["models"], dict):
        raise ProvenanceError(f"{path}: not a manifest ('shards' and 'models' must be objects)")
    return data


def last_two_runs(cache_dir: str | Path) -> tuple[Path, Path]:
    """The two newest manifests of ``cache_dir``/manifests, older first."""
    history = Path(cache_dir) / "manifests"
    entries = history_entries(history)
    if not entries:
        raise ProvenanceError(f"{history}: no manifest history (run `snakemake`: each run's manifest is kept there)")
    if len(entries) == 1:
        raise ProvenanceError(
            f"{history}: only one run in the history ({entries[0].name}); run the workflow again after a change, or name two manifests: shardlens diff OLD NEW"
        )
    return entries[-2], entries[-1]


def history_folder(manifest_path: Path) -> Path:
    """The history that keeps this manifest's listings: its own folder for a history entry,
    else ``manifests/`` beside it (cache/manifest.json -> cache/manifests)."""
    manifest_path = Path(manifest_path)
    if manifest_path.parent.name == "manifests":
        return manifest_path.parent
    return manifest_path.parent / "manifests"


def read_listing(history: Path, sha256: str) -> dict[str, tuple[str, str]] | None:
    """path -> (size, mtime_ns) of the listing kept under this digest; None when not kept.
    Paths with a tab or newline stay as the listing escapes them (``unicode_escape``)."""
    copy = listing_copy(history, sha256)
    if not copy.is_file():
        return None
    out = {}
    for line in gzip.decompress(copy.read_bytes()).decode("utf-8", "surrogateescape").splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 3:
            out[fields[0]] = (fields[1], fields[2])
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted keys (``options.score_threshold``); lists stay whole values."""
    if isinstance(value, dict) and value:
        out = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def params_changes(old: dict, new: dict) -> dict[str, list[dict]]:
    """stage -> [{key, old, new}] for every param whose value differs (absent: null)."""
    out: dict[str, list[dict]] = {}
    for stage in sorted(set(old) | set(new)):
        before, after = flatten(old.get(stage, {})), flatten(new.get(stage, {}))
        changes = []
        for key in sorted(set(before) | set(after)):
            a, b = before.get(key, MISSING), after.get(key, MISSING)
            if a != b:
                changes.append({"key": key, "old": None if a is MISSING else a, "new": None if b is MISSING else b})
        if changes:
            out[stage] = changes
    return out


def model_changes(old: dict, new: dict) -> list[dict]:
    """[{model, stage, file, old, new}] for every weight file added, removed or changed."""
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, {}), new.get(name, {})
        files_a, files_b = a.get("files", {}), b.get("files", {})
        for file in sorted(set(files_a) | set(files_b)):
            if files_a.get(file) != files_b.get(file):
                out.append({"model": name, "stage": b.get("stage", a.get("stage")), "file": file, "old": files_a.get(file), "new": files_b.get(file)})
    return out


def _listings(manifest: dict) -> dict[str, dict]:
    return manifest.get("shard_plan", {}).get("listings", {})


def _first(paths: set[str], limit: int) -> dict:
    return {"count": len(paths), "paths": sorted(paths)[:limit]}


def image_changes(old: dict, new: dict, old_history: Path, new_history: Path, limit: int, notes: list[str]) -> tuple[dict, dict[str, dict]]:
    """Images added, removed and changed, read from the listings that differ; also, per shard,
    how many of its images were added, removed or changed."""
    old_listings, new_listings = _listings(old), _listings(new)
    before: dict[str, tuple[str, tuple[str, str]]] = {}
    after: dict[str, tuple[str, tuple[str, str]]] = {}
    for shard in sorted(set(old_listings) | set(new_listings)):
        a, b = old_listings.get(shard), new_listings.get(shard)
        if a and b and a["sha256"] == b["sha256"]:
            continue
        read = []
        for info, history, into in ((a, old_history, before), (b, new_history, after)):
            if info is None:
                continue
            entries = read_listing(history, info["sha256"])
            if entries is None:
                notes.append(f"the listing of shard {shard} ({info['sha256'][:12]}) is not kept in {history}: its images are not itemised")
                read = []  # one side alone would count all of its images as added or removed
                break
            read.append((entries, into))
        for entries, into in read:
            for path, stat in entries.items():
                into[path] = (shard, stat)
    added = {p for p in after if p not in before}
    removed = {p for p in before if p not in after}
    changed = {p for p in after if p in before and after[p][1] != before[p][1]}
    per_shard: dict[str, dict] = {}
    for kind, paths, side in (("added", added, after), ("removed", removed, before), ("changed", changed, after)):
        for path in paths:
            counts = per_shard.setdefault(side[path][0], {"added": 0, "removed": 0, "changed": 0})
            counts[kind] += 1
    images = {"added": _first(added, limit), "removed": _first(removed, limit), "changed": _first(changed, limit)}
    return images, per_shard


def shard_changes(old: dict, new: dict, params: dict[str, list[dict]], models: list[dict], per_shard: dict[str, dict], code_note: str | None) -> list[dict]:
    """Every shard whose listing or outputs differ: {shard, status, stages, causes}."""
    params_by_stage = {stage: [c["key"] for c in changes] for stage, changes in params.items()}
    models_by_stage: dict[str, list[str]] = {}
    for change in models:
        names = models_by_stage.setdefault(change["stage"], [])
        if change["model"] not in names:
            names.append(change["model"])
    old_listings, new_listings = _listings(old), _listings(new)
    out = []
    for shard in sorted(set(old["shards"]) | set(new["shards"])):
        a, b = old["shards"].get(shard), new["shards"].get(shard)
        if a is None or b is None:
            status, cause = ("added", "new shard") if a is None else ("removed", "removed shard")
            out.append({"shard": shard, "status": status, "stages": sorted((b or a).keys(), key=_stage_order), "causes": [{"cause": cause}]})
            continue
        stages = [s for s in sorted(set(a) | set(b), key=_stage_order) if (a.get(s) or {}).get("sha256") != (b.get(s) or {}).get("sha256")]
        la, lb = old_listings.get(shard), new_listings.get(shard)
        listing_changed = bool(la and lb and la["sha256"] != lb["sha256"])
        if not stages and not listing_changed:
            continue
        causes: list[dict] = []
        if listing_changed:
            causes.append({"cause": "listing", **per_shard.get(shard, {"added": 0, "removed": 0, "changed": 0})})
        explained = listing_changed
        for stage in stages:
            own = False
            if stage in params_by_stage:
                causes.append({"cause": "parameters", "stage": stage, "keys": params_by_stage[stage]})
                own = True
            if stage in models_by_stage:
                causes.append({"cause": "model", "stage": stage, "models": models_by_stage[stage]})
                own = True
            if not own and not explained:
                # the first differing stage, with no changed input the manifests record
                causes.append({"cause": "unexplained", "stage": stage, "detail": code_note or "no recorded input changed (a forced re-run, or code changed)"})
            explained = True
        out.append({"shard": shard, "status": "changed", "stages": stages, "causes": causes})
    return out


def _stage_order(stage: str) -> tuple[int, str]:
    order = list(SHARD_STAGES)
    return (order.index(stage) if stage in order else len(order), stage)


def diff_manifests(old: dict, new: dict, old_path: Path, new_path: Path, limit: int = 10) -> dict:
    """The whole comparison as one JSON-ready dict (what ``shardlens diff --json`` prints)."""
    notes: list[str] = []
    for label, manifest, path in (("old", old, old_path), ("new", new, new_path)):
        if "params" not in manifest or "shard_plan" not in manifest:
            notes.append(f"the {label} manifest {path} predates parameters and listings in the manifest: those are not compared")
    params = params_changes(old.get("params", {}), new.get("params", {}))
    models = model_changes(old["models"], new["models"])
    images, per_shard = image_changes(old, new, history_folder(old_path), history_folder(new_path), limit, notes)
    tools = [
        {"name": name, "old": old.get("tools", {}).get(name), "new": new.get("tools", {}).get(name)}
        for name in sorted(set(old.get("tools", {})) | set(new.get("tools", {})))
        if old.get("tools", {}).get(name) != new.get("tools", {}).get(name)
    ]
    schema_changed = old["schema_hash"] != new["schema_hash"]
    code_bits = [f"{t['name']} {t['old']} -> {t['new']}" for t in tools]
    if schema_changed:
        code_bits.insert(0, "record schemas changed")
    code_note = f"code or tool versions changed ({'; '.join(code_bits)})" if code_bits else None
    plan_a, plan_b = old.get("shard_plan", {}), new.get("shard_plan", {})
    plan = {
        key: {"old": plan_a.get(key), "new": plan_b.get(key)}
        for key in ("count", "configured", "shards", "images", "listings_digest")
        if plan_a.get(key) != plan_b.get(key)
    }
    shards = shard_changes(old, new, params, models, per_shard, code_note)
    aggregates = []
    for name in sorted(set(old.get("aggregates", {})) | set(new.get("aggregates", {}))):
        a, b = (old.get("aggregates", {}).get(name) or {}).get("sha256"), (new.get("aggregates", {}).get(name) or {}).get("sha256")
        if a == b:
            continue
        if name in params:
            cause = {"cause": "parameters", "stage": name, "keys": [c["key"] for c in params[name]]}
        elif shards:
            cause = {"cause": "shards"}  # made from every shard: follows from the shards that differ
        else:
            cause = {"cause": "unexplained", "stage": name, "detail": code_note or "no recorded input changed (a forced re-run, or code changed)"}
        aggregates.append({"name": name, "old": a, "new": b, "cause": cause})
    return {
        "old": _run_summary(old, old_path),
        "new": _run_summary(new, new_path),
        "images": images,
        "models": models,
        "params": params,
        "config_changed": old.get("config_digest") != new.get("config_digest"),
        "shard_plan": plan,
        "schema_changed": schema_changed,
        "tools": tools,
        "shards": shards,
        "aggregates": aggregates,
        "notes": notes,
    }


def _run_summary(manifest: dict, path: Path) -> dict:
    return {
        "manifest": str(path),
        "generated_at": manifest["generated_at"],
        "shards": len(manifest["shards"]),
        "images": manifest.get("shard_plan", {}).get("images", manifest.get("counts", {}).get("ingest_records")),
        "config_digest": manifest.get("config_digest"),
    }


def diff_paths(old_path: str | Path, new_path: str | Path, limit: int = 10) -> dict:
    old_path, new_path = Path(old_path), Path(new_path)
    return diff_manifests(read_manifest_file(old_path), read_manifest_file(new_path), old_path, new_path, limit=limit)


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "(none)"


def describe_cause(cause: dict) -> str:
    kind = cause["cause"]
    if kind == "listing":
        parts = [f"{cause[k]} {k}" for k in ("added", "removed", "changed") if cause[k]]
        return f"listing changed ({', '.join(parts)})" if parts else "listing changed (its images are not itemised: see the notes)"
    if kind == "parameters":
        return f"parameters of {cause['stage']} ({', '.join(cause['keys'])})"
    if kind == "model":
        return f"model of {cause['stage']} ({', '.join(cause['models'])})"
    if kind == "unexplained":
        return f"{cause['stage']}: {cause['detail']}"
    return kind


def format_diff(diff: dict) -> str:
    """The comparison as text, for a person."""
    lines = []
    for label in ("old", "new"):
        run = diff[label]
        lines.append(f"{label}: {run['manifest']} ({run['generated_at']}, {run['images']} images, {run['shards']} shards)")
    images = diff["images"]
    lines.append(f"images: {images['added']['count']} added, {images['removed']['count']} removed, {images['changed']['count']} changed")
    for kind, mark in (("added", "+"), ("removed", "-"), ("changed", "~")):
        entry = images[kind]
        lines.extend(f"  {mark} {path}" for path in entry["paths"])
        if entry["count"] > len(entry["paths"]):
            lines.append(f"  {mark} ... and {entry['count'] - len(entry['paths'])} more")
    if diff["models"]:
        lines.append("models changed:")
        lines.extend(f"  {m['model']} ({m['stage']}) {m['file']}: {_short(m['old'])} -> {_short(m['new'])}" for m in diff["models"])
    else:
        lines.append("models: unchanged")
    if diff["params"]:
        lines.append("parameters changed:")
        for stage, changes in diff["params"].items():
            lines.extend(f"  {stage}: {c['key']} {_value(c['old'])} -> {_value(c['new'])}" for c in changes)
    else:
        lines.append("parameters: unchanged")
    if diff["params"] or diff["models"]:
        lines.append("(a stage whose parameters or model changed re-ran on every shard; the shards below are those whose outputs differ)")
    if diff["config_changed"] and not diff["params"]:
        lines.append("config: changed outside the stages' parameters (exports, catalog, dashboard, ...)")
    for key, change in diff["shard_plan"].items():
        if key != "listings_digest":
            lines.append(f"shard plan {key}: {_value(change['old'])} -> {_value(change['new'])}")
    if diff["schema_changed"]:
        lines.append("record schemas: changed")
    lines.extend(f"tool {t['name']}: {t['old']} -> {t['new']}" for t in diff["tools"])
    shards = diff["shards"]
    lines.append(f"shards that differ: {len(shards)} of {diff['new']['shards']}" if shards else "shards: none differ")
    for shard in shards:
        stages = ", ".join(shard["stages"]) or "no output"
        causes = "; ".join(describe_cause(c) for c in shard["causes"])
        lines.append(f"  {shard['shard']} [{shard['status']}] {stages}: {causes}")
    for agg in diff["aggregates"]:
        why = "follows from the shards that differ" if agg["cause"]["cause"] == "shards" else describe_cause(agg["cause"])
        lines.append(f"aggregate {agg['name']}: {_short(agg['old'])} -> {_short(agg['new'])}: {why}")
    lines.extend(f"note: {note}" for note in diff["notes"])
    return "\n".join(lines)
