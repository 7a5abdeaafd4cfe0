"""Text gate: what the gate saves, measured as the workflow pays it, and where its own time goes.

Two arms on the same generated images (rendered text + scikit-image photo crops, 512x384 by
default), at several fractions of text images (`--fractions`, default 10 %, 30 % and 50 %):

- **gated**: a fresh Python process runs `stages.gate.run_shard`, then another fresh process runs
  `stages.ocr.run_shard` on its decisions, exactly as the workflow's gate and OCR jobs do;
- **ungated**: one fresh process runs `stages.ocr.run_shard` with a gate file that sends every
  image to OCR.

Every process pays its own Python start, imports and model loads, as a workflow job does: the
arm's time is the wall time of its processes, measured from outside. The arms run in alternating
order (ungated first on even repeats, gated first on odd ones), `--repeats` times each (≥ 3); the
medians count. Each process also reports its sections (imports, model load, work) so that the
ratio of the work alone is shown too.

Then the gate's own time per image is split into its parts in one process (decode, prepare =
margin + resize + normalise, model, scoring the probability map), against the same detection
model run alone on the same prepared tensors.

Recall: a ground-truth line is found when an OCR line of its image matches it (case and spaces
ignored, difflib ratio >= 0.8); a text image is read when at least one of its lines is found.
Whether the gate loses real text images is measured on the real-image quality set
(bench/quality.py), not here.

    python bench/text_gate.py [--images 100] [--fractions 0.1 0.3 0.5] [--repeats 3] [--append]
"""

from __future__ import annotations

import argparse
import difflib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, REPO, add_common_args, command_line, emit, generate_images, log, wait_for_quiet  # noqa: E402

sys.path.insert(0, str(REPO))

# One workflow job's worth of one stage, in a fresh process: sections timed inside.
ARM = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {repo!r})
stage = {stage!r}
from pathlib import Path
from shardlens.config import load_config
from shardlens.images.decoding import Limits
import onnxruntime
if stage == "gate":
    from shardlens.stages import gate as module
    from shardlens.models.text_gate import TextGate
else:
    import rapidocr
    from shardlens.stages import ocr as module
    from shardlens.models.ocr_engines import make_ocr_engine
    from shardlens.models.language import LanguageGuesser
imports = time.perf_counter() - t0
config = load_config(images={images!r})
limits = Limits(**config["limits"])
from shardlens.stages.params import stage_options
t = time.perf_counter()
if stage == "gate":
    TextGate(stage_options(config, "gate"), threads=2)
else:
    make_ocr_engine(stage_options(config, "ocr"), threads=2)
    LanguageGuesser(stage_options(config, "ocr").language)
load = time.perf_counter() - t
t = time.perf_counter()
if stage == "gate":
    module.run_shard(ingest={ingest!r}, images_root={images!r}, output={output!r}, shard={shard!r}, threads=2, limits=limits, **config["gate"])
else:
    module.run_shard(ingest={ingest!r}, gate={gate!r}, images_root={images!r}, output={output!r}, shard={shard!r}, threads=2, limits=limits, **config["ocr"])
run = time.perf_counter() - t
print(json.dumps({{"imports": imports, "load": load, "run": run}}))
"""

# The gate's time per image, by part, in one process (models loaded before timing).
PARTS = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
from pathlib import Path
from shardlens.config import load_config
from shardlens.images.decoding import Limits
from shardlens.models.text_gate import TextGate
from shardlens.stages.inputs import distinct_images, load_rgb
config = load_config(images={images!r})
from shardlens.options import GateOptions
options = GateOptions.from_values(config["gate"])
gate = TextGate(options, threads=2)
limits = Limits(**config["limits"])
images = [im for im in distinct_images({ingest!r}) if im.ok]
root = Path({images!r})
parts = dict(decode=0.0, prepare=0.0, model=0.0, score=0.0)
t = time.perf_counter(); arrays = [load_rgb(root, im, limits, options.max_side) for im in images]; parts["decode"] = time.perf_counter() - t
t = time.perf_counter(); tensors = [gate._prepare(a) for a in arrays]; parts["prepare"] = time.perf_counter() - t
gate.session.run(None, {{gate.input_name: tensors[0][None]}})
t = time.perf_counter(); maps = [gate.session.run(None, {{gate.input_name: x[None]}})[0][0, 0] for x in tensors]; parts["model"] = time.perf_counter() - t
t = time.perf_counter(); [gate._score_map(m) for m in maps]; parts["score"] = time.perf_counter() - t
shapes = sorted({{tuple(x.shape[1:]) for x in tensors}})
print(json.dumps({{"n": len(images), "parts": parts, "shapes": [list(s) for s in shapes[:3]]}}))
"""


def norm(text: str) -> str:
    return "".join(text.lower().split())


def found_lines(truth_lines: list[str], ocr_texts: list[str]) -> int:
    got = [norm(t) for t in ocr_texts]
    n = 0
    for line in truth_lines:
        want = norm(line)
        if any(want in g or difflib.SequenceMatcher(None, want, g).ratio() >= 0.8 for g in got):
            n += 1
    return n


def run_process(code: str) -> tuple[float, dict]:
    """Wall time of a fresh Python process (start, imports, model load, work) and its sections."""
    t0 = time.perf_counter()
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_set(folder: Path, n: int, fraction: float, size: tuple[int, int]) -> dict:
    """Generate the images, ingest them into one shard (not timed) and write the gate file that
    sends every image to OCR (the ungated arm's input)."""
    from shardlens.config import load_config
    from shardlens.images.decoding import Limits
    from shardlens.images.listing import list_images
    from shardlens.records import SCHEMA_VERSION, read_jsonl, write_jsonl
    from shardlens.shards import plan_shards, write_listings
    from shardlens.stages import ingest

    images = folder / "images"
    truth = generate_images(images, n, text_fraction=fraction, seed=int(fraction * 1000) + 7, size=size)
    config = load_config(images=str(images))
    cache = folder / "cache"
    plan = plan_shards(list_images(str(images)), 1)
    write_listings(plan, cache / "shards")
    shard = plan.names[0]
    ingest_out = cache / "ingest" / f"{shard}.jsonl"
    ingest.run_shard(
        listing=cache / "shards" / f"{shard}.tsv",
        images_root=images,
        output=ingest_out,
        shard=shard,
        limits=Limits(**config["limits"]),
        allow_outside_root=False,
    )
    path_of = {r["image_id"]: r["path"] for r in read_jsonl(ingest_out, "ingest")}
    all_ocr = cache / "gate_all" / f"{shard}.jsonl"
    records = [
        {
            "schema_version": SCHEMA_VERSION,
            "image_id": i,
            "has_text": True,
            "score": 1.0,
            "decision": "ocr",
            "skip_reason": None,
            "text_regions": 1,
            "gate_version": "none",
        }
        for i in path_of
    ]
    write_jsonl(all_ocr, "gate", records)
    return {"images": images, "truth": truth, "cache": cache, "shard": shard, "ingest": ingest_out, "all_ocr": all_ocr, "path_of": path_of}


def measure_fraction(s: dict, repeats: int) -> dict:
    cache, shard = s["cache"], s["shard"]
    common = dict(repo=str(REPO), images=str(s["images"]), ingest=str(s["ingest"]), shard=shard)
    gate_out = cache / "gate" / f"{shard}.jsonl"

    def gated() -> dict:
        g_wall, g = run_process(ARM.format(stage="gate", output=str(gate_out), gate="", **common))
        o_wall, o = run_process(ARM.format(stage="ocr", output=str(cache / "ocr_gated" / f"{shard}.jsonl"), gate=str(gate_out), **common))
        return {"wall": g_wall + o_wall, "gate_wall": g_wall, "ocr_wall": o_wall, "work": g["run"] + o["run"], "gate_run": g["run"], "gate": g, "ocr": o}

    def ungated() -> dict:
        wall, o = run_process(ARM.format(stage="ocr", output=str(cache / "ocr_all" / f"{shard}.jsonl"), gate=str(s["all_ocr"]), **common))
        return {"wall": wall, "work": o["run"], "ocr": o}

    runs = {"gated": [], "ungated": []}
    for k in range(repeats):
        order = [("ungated", ungated), ("gated", gated)] if k % 2 == 0 else [("gated", gated), ("ungated", ungated)]
        for name, arm in order:
            runs[name].append(arm())
            log(f"  repeat {k + 1}/{repeats} {name}: {runs[name][-1]['wall']:.1f} s wall, {runs[name][-1]['work']:.1f} s work")
    med = lambda arm, key: statistics.median(r[key] for r in runs[arm])  # noqa: E731
    return {"runs": runs, "gated_wall": med("gated", "wall"), "ungated_wall": med("ungated", "wall"),
            "gated_work": med("gated", "work"), "ungated_work": med("ungated", "work"),
            "gate_wall": med("gated", "gate_wall"), "gate_run": med("gated", "gate_run")}  # fmt: skip


def quality(s: dict) -> dict:
    from shardlens.records import read_jsonl

    cache, shard, truth, path_of = s["cache"], s["shard"], s["truth"], s["path_of"]
    decisions = {r["image_id"]: r["decision"] for r in read_jsonl(cache / "gate" / f"{shard}.jsonl", "gate")}

    def lines_by_path(path: Path) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in read_jsonl(path, "ocr"):
            out.setdefault(path_of[r["image_id"]], []).append(r["text"])
        return out

    gated_lines = lines_by_path(cache / "ocr_gated" / f"{shard}.jsonl")
    all_lines = lines_by_path(cache / "ocr_all" / f"{shard}.jsonl")
    gated_in = {path_of[i] for i, d in decisions.items() if d == "ocr"}
    text_paths = [p for p, t in truth.items() if t["has_text"]]
    photo_paths = [p for p, t in truth.items() if not t["has_text"]]
    read_all = {p for p in text_paths if found_lines(truth[p]["lines"], all_lines.get(p, [])) > 0}
    read_gated = {p for p in text_paths if found_lines(truth[p]["lines"], gated_lines.get(p, [])) > 0}
    return {"text": len(text_paths), "photos": len(photo_paths), "ocrd": len(gated_in),
            "photos_in": sum(p in gated_in for p in photo_paths), "read_all": len(read_all), "read_gated": len(read_gated),
            "lost": sorted(read_all - gated_in)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    add_common_args(parser)
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (the medians need them)")

    tmp = Path(tempfile.mkdtemp(prefix="shardlens-gate-"))
    sets = {}
    for fraction in args.fractions:
        log(f"generating and ingesting {args.images} images, {fraction:.0%} with text")
        sets[fraction] = prepare_set(tmp / f"f{int(fraction * 100)}", args.images, fraction, (args.width, args.height))

    load_before = wait_for_quiet(args.max_load, args.max_wait)
    results = {}
    for fraction, s in sets.items():
        log(f"{fraction:.0%} text images: {args.repeats} alternating repeats of each arm")
        results[fraction] = measure_fraction(s, args.repeats)
        results[fraction]["quality"] = quality(s)
    base = sets[args.fractions[0]]
    _, parts = run_process(PARTS.format(repo=str(REPO), images=str(base["images"]), ingest=str(base["ingest"])))

    lines = [
        f"{args.images} generated {args.width}x{args.height} images per row (rendered text lines, the rest scikit-image photo crops), "
        f"default gate and OCR config, threads=2. Each arm runs as the workflow's jobs do: gated = a fresh gate process, then a fresh "
        f"OCR process on its decisions; ungated = one fresh OCR process on every image. **Both arms pay their own Python start, imports "
        f"and model loads** (wall time of the processes). Median of {args.repeats} alternating repeats; 'work' = the `run_shard` calls alone.",
        "",
        "| text images | ungated OCR (s) | gate + gated OCR (s) | **ratio** | ratio of the work alone | gate process (s) | sent to OCR | photos sent | text images read (gated / ungated) | lost by the gate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fraction, r in results.items():
        q = r["quality"]
        target = " (target ≤ 0.5)" if abs(fraction - 0.1) < 1e-9 else ""
        lines.append(
            f"| {fraction:.0%} ({q['text']}) | {r['ungated_wall']:.1f} | {r['gated_wall']:.1f} | **{r['gated_wall'] / r['ungated_wall']:.2f}**{target} | "
            f"{r['gated_work'] / r['ungated_work']:.2f} | {r['gate_wall']:.1f} | {q['ocrd']} | {q['photos_in']}/{q['photos']} | {q['read_gated']}/{q['read_all']} | {len(q['lost'])} |"
        )
    n = parts["n"]
    ms = {k: 1000 * v / n for k, v in parts["parts"].items()}
    total = sum(ms.values())
    gate_ms = 1000 * results[args.fractions[0]]["gate_run"] / args.images
    lines += [
        "",
        f"The gate's time per image ({n} images of the {args.fractions[0]:.0%} row, one process, models loaded first; prepared tensors "
        f"{', '.join('x'.join(map(str, s)) for s in parts['shapes'])}): in the stage (`gate.run_shard`, decoding prefetched in a thread) "
        f"**{gate_ms:.0f} ms/image** (target ≤ 40); by part, run one after another:",
        "",
        "| decode (`load_rgb`) | prepare (margin, resize, normalise) | model (PP-OCRv6 det, one image a call) | score (blobs of the map) | sum |",
        "|---|---|---|---|---|",
        f"| {ms['decode']:.1f} | {ms['prepare']:.1f} | {ms['model']:.1f} | {ms['score']:.1f} | {total:.1f} |",
    ]
    emit("Text gate: gate + OCR vs OCR on everything, fresh processes", command_line(), load_before, lines, append=args.append)


if __name__ == "__main__":
    main()
