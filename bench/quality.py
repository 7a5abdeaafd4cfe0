"""Quality of the workflow on the real-image quality set, next to the raw engines it wraps.

Runs the real workflow (``snakemake -s Snakefile -d WORKDIR``, images = the quality set,
``shards.count: 2``) and, in the same run on the same images, the two references that do not use
the wrapper: raw RapidOCR with its own defaults (``bench/reference_rapidocr.py``) and a minimal
NanoDet-g (``bench/reference_nanodet.py``). Everything is scored by ``shardlens.evaluation``
(definitions: quality-metrics.md), per split: ``test`` and ``all`` (and ``fit`` with
``--split fit``). Prints a markdown table per split (rows: metrics; columns: shardlens, raw
RapidOCR, raw NanoDet) and the time per image of each stage and reference.

What is read from the workdir:
* ``cache/ingest/*.jsonl``: path -> image_id (predictions are matched to the gold by image_id);
* ``cache/gate/*.jsonl``: ``has_text``, ``score``, ``decision`` per image;
* ``cache/ocr/*.jsonl``: the lines (``text``, ``bbox``, ``confidence``);
* ``cache/detect/*.jsonl``: the regions (``bbox``, ``score``, ``labels``: the top one is the
  region's label);
* the catalog (``catalog.database``): view ``final_annotations`` (``machine_label``,
  ``cluster_id`` of each ``item = 'region'``) and view ``image_labels`` (``final_label``: the
  image's top label; a fresh workdir has no reviews, so it is the machine label);
* ``benchmarks/{gate,ocr,detect}/*.tsv``: the stage's seconds (column ``s``, model loading
  included).

The raw RapidOCR column's gate figures treat "returned any line" as has_text. Detection figures
of both detectors count the regions at or above ``--detect-threshold`` (default: the workflow's
``detect.score_threshold``); the NanoDet reference runs at min(0.3, threshold). The references'
outputs are kept in ``WORKDIR/quality/references.json`` (keyed by image sha256) and reused by the
next run on that workdir unless ``--rerun-references``.

    python bench/quality.py [--workdir DIR] [--no-run] [--config KEY=VALUE ...] [--split fit]
                            [--detect-threshold T] [--json OUT] [--cores N]

``--config`` entries with a plain key are passed to ``snakemake --config`` as they are;
a dotted key (``detect.score_threshold=0.3``) is written into the workdir's config file (YAML
typed), since Snakemake's ``--config`` reads nested values as strings.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from shardlens.evaluation import match_predictions, score
from shardlens.quality_set import QualitySetError, load_ground_truth

from _common import PYTHON, REPO, cpu_model, fmt_load, git_commit, load_average, log  # bench/ is the script's sys.path[0]

QUALITY = REPO / "tests" / "quality"
REFERENCE_NANODET_THRESHOLD = 0.3
SYSTEMS = ("shardlens", "raw RapidOCR", "raw NanoDet")
PARTS = {
    "shardlens": ("gate", "ocr", "detect", "top_label", "clusters"),
    "raw RapidOCR": ("gate", "ocr"),
    "raw NanoDet": ("detect", "top_label"),
}


class BenchError(RuntimeError):
    """A problem the bench reports on one line and exits with."""


# --------------------------------------------------------------------------------------------
# Configuration and the workflow run
# --------------------------------------------------------------------------------------------


def split_overrides(entries: list[str]) -> tuple[dict, list[str]]:
    """(nested dict of the dotted KEY=VALUE entries, YAML typed; the plain entries, untouched)."""
    nested: dict = {}
    plain = []
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise BenchError(f"--config {entry!r}: expected KEY=VALUE")
        if "." not in key:
            plain.append(entry)
            continue
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested, plain


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def effective_config(workdir: Path, plain: list[str]) -> dict:
    """The config the workflow runs with: the workdir's file, the plain --config entries on top,
    validated and completed with the schema's defaults."""
    from snakemake.cli import parse_config

    from shardlens.config import load_config

    path = workdir / "config" / "config.yaml"
    if not path.exists():
        raise BenchError(f"{path} does not exist: run without --no-run first")
    config = merge(yaml.safe_load(path.read_text()) or {}, parse_config(plain))
    try:
        return load_config(None, **config)
    except Exception as exc:
        reason = next((ln for ln in str(exc).splitlines() if "ValidationError" in ln), str(exc).splitlines()[0])
        raise BenchError(
            f"the workflow config is not valid ({reason}); nested --config values reach Snakemake as strings: use a dotted key (detect.score_threshold=0.3)"
        ) from exc


def write_workdir_config(workdir: Path, images: Path, nested: dict) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    config = merge({"images": str(images), "shards": {"count": 2}}, nested)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))


def run_workflow(workdir: Path, plain: list[str], cores: int) -> float:
    """Run snakemake in the workdir, progress on stderr; returns the wall seconds."""
    cmd = [PYTHON, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", str(cores)]
    if plain:
        cmd += ["--config", *plain]
    log_path = workdir / "quality" / "snakemake.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"running the workflow in {workdir} (log: {log_path})")
    t0 = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            out.write(line)
            if re.search(r"\d+ of \d+ steps|Error|error:", line):
                log("snakemake: " + line.strip())
        code = proc.wait()
    if code != 0:
        tail = log_path.read_text().splitlines()[-15:]
        raise BenchError(f"snakemake failed ({code}); see {log_path}:\n" + "\n".join(tail))
    elapsed = time.perf_counter() - t0
    log(f"workflow done in {elapsed:.0f} s")
    return elapsed


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


def read_jsonl(folder: Path) -> list[tuple[str, dict]]:
    """(shard, record) of every shard file in ``folder``."""
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            records += [(path.stem, json.loads(line)) for line in handle if line.strip()]
    return records


def own_records(folder: Path, owner: dict[str, str]) -> list[dict]:
    """The records of each image's own shard: an image whose bytes sit under paths in two shards
    is processed in both, and counted once."""
    return [r for shard, r in read_jsonl(folder) if owner.get(r.get("image_id")) == shard]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def workflow_predictions(workdir: Path, database: str) -> tuple[dict[str, dict], dict[str, str]]:
    """(predictions by image_id, ingest path -> image_id) from the workdir's cache and catalog."""
    cache = workdir / "cache"
    if not (cache / "ingest").is_dir():
        raise BenchError(f"{cache}/ingest does not exist: the workflow has not run in {workdir}")
    paths: dict[str, str] = {}
    owner: dict[str, str] = {}  # image_id -> the first shard that holds it
    for shard, r in read_jsonl(cache / "ingest"):
        if r.get("image_id") and r.get("status") == "ok":
            paths[r["path"]] = r["image_id"]
            owner.setdefault(r["image_id"], shard)
    preds: dict[str, dict] = {iid: {"gate": None, "lines": [], "regions": [], "top_label": None} for iid in owner}
    for r in own_records(cache / "gate", owner):
        if r["image_id"] in preds:
            preds[r["image_id"]]["gate"] = {k: r.get(k) for k in ("has_text", "score", "decision", "skip_reason", "text_regions")}
    for r in sorted(own_records(cache / "ocr", owner), key=lambda r: (r["image_id"], r["line_no"])):
        if r["image_id"] in preds:
            preds[r["image_id"]]["lines"].append({"text": r["text"], "bbox": r["bbox"], "score": r["confidence"], "line_no": r["line_no"]})
    regions: dict[tuple[str, int], dict] = {}
    for r in own_records(cache / "detect", owner):
        if r["image_id"] not in preds:
            continue
        region = {
            "region_id": r["region_id"], "bbox": r["bbox"], "score": r["score"], "label": r["labels"][0]["label"],
            "labels": r["labels"], "detector_label": r.get("detector_label"), "caption": r.get("caption"),
            "cluster_id": None, "machine_label": None,
        }  # fmt: skip
        preds[r["image_id"]]["regions"].append(region)
        regions[r["image_id"], r["region_id"]] = region
    db = workdir / database
    if not db.exists():
        raise BenchError(f"{db} does not exist: the workflow did not finish in {workdir}")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT image_id, region_id, machine_label, cluster_id FROM final_annotations WHERE item = 'region'")
        for image_id, region_id, machine_label, cluster_id in rows:
            if (image_id, region_id) in regions:
                regions[image_id, region_id].update(machine_label=machine_label, cluster_id=cluster_id)
        for image_id, label in conn.execute("SELECT image_id, final_label FROM image_labels"):
            if image_id in preds:
                preds[image_id]["top_label"] = label
    except sqlite3.Error as exc:
        raise BenchError(f"{db}: cannot read the views final_annotations / image_labels: {exc}") from exc
    finally:
        conn.close()
    for p in preds.values():
        p["regions"].sort(key=lambda r: -r["score"])
    return preds, paths


def stage_seconds(workdir: Path, stage: str) -> float | None:
    """Sum of the stage's benchmark seconds over its shards (None when there is none)."""
    total, found = 0.0, False
    for path in sorted((workdir / "benchmarks" / stage).glob("*.tsv")):
        with path.open() as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                total += float(row["s"])
                found = True
    return total if found else None


def run_references(gold: list[dict], images: Path, image_ids: dict[str, str], workdir: Path, threshold: float, rerun: bool) -> dict:
    """{"rapidocr": {sha: {lines, ms}}, "nanodet": {sha: {regions, ms}}, "threshold", "load_s"}:
    both references on every gold image, reusing the workdir's stored outputs when they fit."""
    import reference_nanodet
    import reference_rapidocr

    store = workdir / "quality" / "references.json"
    ref_threshold = min(REFERENCE_NANODET_THRESHOLD, threshold)
    kept: dict[str, Any] = {"rapidocr": {}, "nanodet": {}, "threshold": ref_threshold, "load_s": {}}
    if store.exists() and not rerun:
        old = json.loads(store.read_text())
        kept["rapidocr"] = old.get("rapidocr", {})
        kept["load_s"] = old.get("load_s", {})
        if old.get("threshold", 1.0) <= ref_threshold:
            kept["nanodet"] = old.get("nanodet", {})
            kept["threshold"] = old["threshold"]
    todo = {name: [g for g in gold if image_ids[g["file"]] not in kept[name]] for name in ("rapidocr", "nanodet")}
    references = {
        "rapidocr": ("raw RapidOCR", "lines", reference_rapidocr.ReferenceRapidOCR, "read"),
        "nanodet": (f"raw NanoDet (threshold {ref_threshold})", "regions", lambda: reference_nanodet.ReferenceNanoDet(threshold=ref_threshold), "detect"),
    }
    for name, (title, field, load, method) in references.items():
        if not todo[name]:
            continue
        log(f"{title} on {len(todo[name])} images")
        t0 = time.perf_counter()
        run_one = getattr(load(), method)
        kept["load_s"][name] = time.perf_counter() - t0
        for i, g in enumerate(todo[name], 1):
            t0 = time.perf_counter()
            try:
                output = run_one(images / g["file"])
            except (OSError, ValueError, RuntimeError) as exc:  # reported as a missing prediction, never fatal
                log(f"{title} failed on {g['file']}: {exc}")
                continue
            kept[name][image_ids[g["file"]]] = {field: output, "ms": (time.perf_counter() - t0) * 1000}
            if i % 10 == 0:
                log(f"{title}: {i}/{len(todo[name])}")
    if todo["rapidocr"] or todo["nanodet"]:
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(kept, ensure_ascii=False))
    else:
        log(f"references: outputs reused from {store}")
    kept["reused"] = not (todo["rapidocr"] or todo["nanodet"])
    return kept


def reference_predictions(gold: list[dict], image_ids: dict[str, str], refs: dict, threshold: float) -> dict[str, dict[str, dict]]:
    """Predictions by gold file for the two reference columns."""
    ocr, det = {}, {}
    for g in gold:
        iid = image_ids[g["file"]]
        if iid in refs["rapidocr"]:
            lines = refs["rapidocr"][iid]["lines"]
            ocr[g["file"]] = {"gate": {"has_text": bool(lines), "decision": "ocr" if lines else "skip"}, "lines": lines}
        if iid in refs["nanodet"]:
            regions = refs["nanodet"][iid]["regions"]
            top = next((r["label"] for r in regions if r["score"] >= threshold), None)
            det[g["file"]] = {"regions": regions, "top_label": top}
    return {"raw RapidOCR": ocr, "raw NanoDet": det}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def rows_of(report: dict | None) -> dict[str, str]:
    """Table cells of one system's report (missing parts: n/a)."""
    r = report or {}
    cells: dict[str, str] = {}
    g = r.get("gate")
    cells["Gate has_text: precision / recall / F1"] = f"{fmt(g['precision'])} / {fmt(g['recall'])} / {fmt(g['f1'])} ({g['images']})" if g else "n/a"
    g = r.get("gate_decision")
    cells["Gate decision (OCR ran): precision / recall / F1"] = f"{fmt(g['precision'])} / {fmt(g['recall'])} / {fmt(g['f1'])}" if g else "n/a"
    o = r.get("ocr")
    cells["CER case-sensitive micro / macro"] = f"{fmt(o['cer_cs_micro'])} / {fmt(o['cer_cs_macro'])} ({o['images']})" if o else "n/a"
    cells["CER case-insensitive micro / macro"] = f"{fmt(o['cer_ci_micro'])} / {fmt(o['cer_ci_macro'])}" if o else "n/a"
    cells["Word-bag F1"] = fmt(o["word_f1"]) if o else "n/a"
    d = r.get("detect_image")
    cells["Detection, image level: precision / recall"] = f"{fmt(d['precision'])} / {fmt(d['recall'])}" if d else "n/a"
    b = r.get("boxes")
    cells["Boxes at IoU 0.5: precision / recall"] = (
        f"{fmt(b['precision'])} / {fmt(b['recall'])} ({b['matched']}/{b['predicted']} pred., {b['gold_boxes']} gold)" if b else "n/a"
    )
    cells["Boxes: class-agnostic recall"] = fmt(b["agnostic_recall"]) if b else "n/a"
    n = r.get("nature")
    cells["Nature photos with any detection"] = f"{n['with_detection']} / {n['images']}" if n else "n/a"
    t = r.get("top_label")
    cells["Top label accuracy (object images)"] = f"{fmt(t['accuracy'])} ({t['right']}/{t['images']})" if t else "n/a"
    p = r.get("purity")
    cells["Object-cluster purity"] = f"{fmt(p['purity'])} ({p['members']} regions, {p['clusters']} clusters)" if p else "n/a"
    cells["Missing predictions"] = str(r["missing"]["count"]) if r else "n/a"
    return cells


def table(split: str, n_images: int, reports: dict[str, dict]) -> list[str]:
    cells = {system: rows_of(reports.get(system)) for system in SYSTEMS}
    lines = [f"**Split `{split}`** ({n_images} images)", "", "| metric | " + " | ".join(SYSTEMS) + " |", "|---|" + "---|" * len(SYSTEMS)]
    for metric in cells["shardlens"]:
        lines.append(f"| {metric} | " + " | ".join(cells[s][metric] for s in SYSTEMS) + " |")
    return lines


def per_ms(seconds: float | None, images: int) -> str:
    return "n/a" if seconds is None or not images else f"{seconds * 1000 / images:.0f}"


def timing(workdir: Path, gold: list[dict], preds: dict[str, dict], refs: dict, image_ids: dict[str, str]) -> tuple[list[str], dict]:
    """(table lines, figures): ms per image of the gate, OCR and detect stages and of each reference."""
    n = len(gold)
    ocr_images = sum(1 for g in gold if ((preds.get(g["file"]) or {}).get("gate") or {}).get("decision") == "ocr")
    stage = {name: stage_seconds(workdir, name) for name in ("gate", "ocr", "detect")}
    ref_ms = {name: [refs[name][image_ids[g["file"]]]["ms"] for g in gold if image_ids[g["file"]] in refs[name]] for name in ("rapidocr", "nanodet")}
    figures = {
        "gate_ms_per_image": stage["gate"] and stage["gate"] * 1000 / n,
        "ocr_ms_per_image": stage["ocr"] and stage["ocr"] * 1000 / n,
        "ocr_ms_per_ocr_image": stage["ocr"] and ocr_images and stage["ocr"] * 1000 / ocr_images,
        "ocr_images": ocr_images,
        "detect_ms_per_image": stage["detect"] and stage["detect"] * 1000 / n,
        "rapidocr_ms_per_image": statistics.fmean(ref_ms["rapidocr"]) if ref_ms["rapidocr"] else None,
        "nanodet_ms_per_image": statistics.fmean(ref_ms["nanodet"]) if ref_ms["nanodet"] else None,
        "reference_load_s": refs.get("load_s", {}),
    }
    ocr_cell = f"{per_ms(stage['ocr'], n)} ({per_ms(stage['ocr'], ocr_images)} per OCR'd image, {ocr_images})"
    row = [
        per_ms(stage["gate"], n),
        ocr_cell,
        per_ms(stage["detect"], n),
        fmt(figures["rapidocr_ms_per_image"], 0),
        fmt(figures["nanodet_ms_per_image"], 0),
    ]
    lines = [
        "| time per image (ms) | gate | OCR | detect | raw RapidOCR | raw NanoDet |",
        "|---|---|---|---|---|---|",
        f"| all {n} images | " + " | ".join(row) + " |",
    ]
    return lines, figures


def header(args: argparse.Namespace, gold: list[dict], workdir: Path, threshold: float, loads: tuple, started: datetime) -> list[str]:
    shown = args.ground_truth.relative_to(REPO) if args.ground_truth.is_relative_to(REPO) else args.ground_truth
    splits = Counter(g["split"] for g in gold)
    return [
        "### Quality on the real-image set",
        "",
        f"`python {' '.join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])}`",
        "",
        (
            f"Commit: `{commit()}`. Machine: {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu_model()}. "
            f"Load average (1/5/15 min) before: {fmt_load(loads[0])}, after: {fmt_load(loads[1])}. Date: {started:%Y-%m-%d %H:%M} UTC."
        ),
        (
            f"Set: {shown}, {len(gold)} images ({splits['test']} test, {splits['fit']} fit). Workdir: {workdir}. "
            f"Workflow config overrides: {' '.join(args.config) or 'none'}. Detection threshold: {threshold}."
        ),
        "",
    ]


def notes(refs: dict, workdir: Path, scores: dict[str, dict]) -> list[str]:
    loads = ", ".join(f"{k} {v:.1f} s" for k, v in refs.get("load_s", {}).items())
    reused = f"; their outputs and times were reused from {workdir}/quality/references.json" if refs["reused"] else ""
    lines = [
        "",
        (
            "Gate: has_text, and decision = ocr (the gate's score threshold applied); raw RapidOCR: any line returned. "
            "CER: edit distance / reference characters over images with gold text, lines in reading order, optional text "
            "dropped; (n) = images. Detection: regions with score >= the threshold; boxes matched greedily in score order, "
            "same label, IoU >= 0.5, on images with box annotations. Top label: the image's final label in image_labels "
            "(raw NanoDet: its best region). Purity: clusters of regions matched (class-agnostic) to a gold box. Stage times "
            f"come from benchmarks/*.tsv (model loading included); the references' are per call, model loading excluded ({loads}){reused}."
        ),
    ]
    missing = sorted({f for split in scores.values() for rep in split.values() for f in rep["missing"]["files"]})
    if missing:
        lines.append(f"Missing predictions ({len(missing)}): {', '.join(missing)}.")
    return lines


def commit() -> str:
    return git_commit().replace("+uncommitted changes", "+dirty")


def write_json(path: Path, figures: dict, gold: list[dict], image_ids: dict[str, str], ours: dict, refs: dict) -> None:
    images = [
        {
            "file": g["file"], "image_id": image_ids[g["file"]], "category": g["category"], "split": g["split"], "gold": g,
            "shardlens": ours.get(g["file"]), "rapidocr": refs["rapidocr"].get(image_ids[g["file"]]),
            "nanodet": refs["nanodet"].get(image_ids[g["file"]]),
        }
        for g in gold
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**figures, "images": images}, indent=1, ensure_ascii=False, default=str))
    log(f"wrote {path}")


def run(args: argparse.Namespace) -> None:
    if not args.ground_truth.exists():
        raise BenchError(f"the quality set is missing: {args.ground_truth} does not exist")
    if args.no_run and not args.workdir:
        raise BenchError("--no-run needs --workdir")
    images = (args.images or args.ground_truth.parent / "images").resolve()
    gold = load_ground_truth(args.ground_truth, images)
    image_ids = {g["file"]: sha256(images / g["file"]) for g in gold}
    log(f"{len(gold)} gold images in {args.ground_truth}")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="shardlens-quality-"))).resolve()
    nested, plain = split_overrides(args.config)
    if args.no_run and nested:
        raise BenchError("--no-run cannot apply dotted --config entries (they change the workflow's config file)")
    load_before, started = load_average(), datetime.now(UTC)
    if not args.no_run:
        write_workdir_config(workdir, images, nested)
    config = effective_config(workdir, plain)  # validated before the run: a bad entry fails at once
    if not args.no_run:
        run_workflow(workdir, plain, args.cores)
    if Path(config["images"]).resolve() != images:
        log(f"warning: the workdir's images are {config['images']}, not {images}")
    threshold = args.detect_threshold if args.detect_threshold is not None else config["detect"]["score_threshold"]
    by_id, paths = workflow_predictions(workdir, config["catalog"]["database"])
    ours = match_predictions(gold, by_id, image_ids, {p: by_id[i] for p, i in paths.items()})
    refs = run_references(gold, images, image_ids, workdir, threshold, args.rerun_references)
    predictions = {"shardlens": ours, **reference_predictions(gold, image_ids, refs, threshold)}
    load_after = load_average()

    scores: dict[str, dict] = {}
    body: list[str] = []
    for split in ["test", "all"] + (["fit"] if args.split == "fit" else []):
        subset = [g for g in gold if split == "all" or g["split"] == split]
        scores[split] = {s: score(subset, predictions[s], threshold, PARTS[s]) for s in SYSTEMS}
        body += [*table(split, len(subset), scores[split]), ""]
    time_lines, time_figures = timing(workdir, gold, ours, refs, image_ids)
    print("\n".join(header(args, gold, workdir, threshold, (load_before, load_after), started) + body + time_lines + notes(refs, workdir, scores)))
    if args.json:
        figures = {
            "commit": commit(), "date": started.isoformat(), "machine": {"cores": os.cpu_count(), "cpu": cpu_model()},
            "load_before": load_before, "load_after": load_after, "workdir": str(workdir), "config": config,
            "overrides": args.config, "detect_threshold": threshold, "reference_nanodet_threshold": refs["threshold"],
            "scores": scores, "timing": time_figures,
        }  # fmt: skip
        write_json(args.json, figures, gold, image_ids, ours, refs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, help="workflow folder to run in (and reuse); default: a new temp folder")
    parser.add_argument("--no-run", action="store_true", help="do not run the workflow; rescore the existing --workdir")
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="workflow config entries (see the docstring)")
    parser.add_argument("--split", choices=["fit"], help="also report the fit split")
    parser.add_argument("--detect-threshold", type=float, help="score threshold of the detection figures (default: the workflow's)")
    parser.add_argument("--json", type=Path, help="write all figures and per-image predictions here")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--ground-truth", type=Path, default=QUALITY / "ground_truth.json")
    parser.add_argument("--images", type=Path, help="images folder (default: 'images' beside the ground truth)")
    parser.add_argument("--rerun-references", action="store_true", help="run the references again even if the workdir holds their outputs")
    args = parser.parse_args()
    try:
        run(args)
    except (BenchError, QualitySetError) as exc:
        print(f"bench/quality.py: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
