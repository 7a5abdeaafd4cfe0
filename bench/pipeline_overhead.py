"""Workflow overhead: images/s of the per-shard chain (ingest -> gate -> OCR -> detect -> embed)
through `snakemake --cores 2`, against the same stage functions run in one Python process.

The image set is generated (30 % text rendered with DejaVu fonts, 70 % scikit-image photo crops,
512x384, deterministic: `--text-fraction`, `--size`). The in-process limit ("bare") calls `shardlens.stages.<stage>.run_shard`
on ONE shard holding every image, in one fresh Python process with threads=2 (what each rule
gets under --cores 2): each model is loaded once, nothing is started per shard. Imports are timed
apart and left out of the bare figure. The workflow runs
`snakemake -s Snakefile -d WORKDIR --cores 2 --until embed` in a fresh WORKDIR per shard size
(`shards.count` = images / size); its wall time is the workflow figure. The per-job benchmark
TSVs (benchmarks/{rule}/{shard}.tsv) and each job's closing JSON line (seconds spent inside
run_shard) split that time into: inside run_shard (model load + work), outside it (Python start,
Snakemake's script preamble, imports), and Snakemake itself (start, DAG, scheduling).
Then one job per stage (smallest shard size) is re-run in a fresh process in timed sections (Python
start, imports, model load, work) to show where a job's fixed cost goes.

    python bench/pipeline_overhead.py [--images 500] [--sizes 25 100 500] [--append]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PYTHON,
    REPO,
    add_common_args,
    command_line,
    emit,
    generate_images,
    log,
    run_snakemake,
    wait_for_quiet,
    write_workdir_config,
)

STAGES = ("ingest", "gate", "ocr", "detect", "regions", "embed")

# One fresh process: imports timed apart, then every stage on one shard holding all images.
BARE = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {repo!r})
import onnxruntime, rapidocr, torch, sentence_transformers  # what the stages import lazily
from shardlens.config import load_config
from shardlens.images.decoding import Limits
from shardlens.images.listing import list_images
from shardlens.shards import plan_shards, write_listings
from shardlens.stages import ingest, gate, ocr, detect, regions, embed
from shardlens.stages.params import stage_params
from shardlens.models import ocr_engines, nanodet, text_embedder, text_gate, language
import_s = time.perf_counter() - t0
from pathlib import Path
images, cache = Path({images!r}), Path({cache!r})
config = load_config(images=str(images))
limits = Limits(**config["limits"])
t = time.perf_counter()
listed = list_images(str(images), extensions=config["listing"]["extensions"])
plan = plan_shards(listed, 1)
write_listings(plan, cache / "shards")
plan_s = time.perf_counter() - t
shard = plan.names[0]
out = lambda stage: cache / stage / f"{{shard}}.jsonl"
times = {{}}
t = time.perf_counter()
ingest.run_shard(listing=cache / "shards" / f"{{shard}}.tsv", images_root=images, output=out("ingest"), shard=shard, limits=limits, allow_outside_root=False)
times["ingest"] = time.perf_counter() - t
t = time.perf_counter()
gate.run_shard(ingest=out("ingest"), images_root=images, output=out("gate"), shard=shard, threads=2, limits=limits, **config["gate"])
times["gate"] = time.perf_counter() - t
t = time.perf_counter()
ocr.run_shard(ingest=out("ingest"), gate=out("gate"), images_root=images, output=out("ocr"), shard=shard, threads=2, limits=limits, **config["ocr"])
times["ocr"] = time.perf_counter() - t
t = time.perf_counter()
detect.run_shard(ingest=out("ingest"), images_root=images, output=out("detect"), shard=shard, options=stage_params(config, "detect")["options"], threads=2, limits=limits)
times["detect"] = time.perf_counter() - t
t = time.perf_counter()
regions.run_shard(detect=out("detect"), output=out("regions"), shard=shard, options=stage_params(config, "regions")["options"], threads=1)
times["regions"] = time.perf_counter() - t
t = time.perf_counter()
embed.run_shard(regions=out("regions"), ocr=out("ocr"), output=out("embed"), shard=shard, options=config["embed"], threads=2)
times["embed"] = time.perf_counter() - t
print(json.dumps({{"import_s": import_s, "plan_s": plan_s, "stages": times, "images": len(listed)}}))
"""

# One job's worth of work in a fresh process, in timed sections: imports (the stage module and
# the libraries it imports lazily), model load (the constructors run_shard calls), run_shard.
PROFILE_JOB = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {repo!r})
stage, shard, work, images = {stage!r}, {shard!r}, {work!r}, {images!r}
import importlib
from pathlib import Path
from shardlens.config import load_config
from shardlens.images.decoding import Limits
from shardlens.stages.params import stage_options, stage_params
module = importlib.import_module(f"shardlens.stages.{{stage}}")
if stage == "gate":
    import onnxruntime
elif stage == "ocr":
    import rapidocr, onnxruntime
    from shardlens.models import language
elif stage == "detect":
    import onnxruntime
    from shardlens.models import nanodet
elif stage == "embed":
    import onnxruntime, tokenizers
    from shardlens.models import text_embedder
t_import = time.perf_counter() - t0
config = load_config(images=images)
limits = Limits(**config["limits"])
t = time.perf_counter()
if stage == "gate":
    from shardlens.models.text_gate import TextGate
    TextGate(stage_options(config, "gate"), threads=2)
elif stage == "ocr":
    from shardlens.models.ocr_engines import make_ocr_engine
    from shardlens.models.language import LanguageGuesser
    make_ocr_engine(stage_options(config, "ocr"), threads=2)
    LanguageGuesser(stage_options(config, "ocr").language)
elif stage == "detect":
    from shardlens.models.detectors import make_detector
    from shardlens.stages.detect import detector_version
    make_detector(stage_options(config, "detect"), threads=2)
    detector_version(stage_params(config, "detect")["options"])
elif stage == "embed":
    from shardlens.models.text_embedder import make_text_embedder
    make_text_embedder(stage_options(config, "embed"), threads=2)
t_load = time.perf_counter() - t
cache = Path(work) / "cache"
out = Path(work) / "profile" / stage / f"{{shard}}.jsonl"
src = lambda s: cache / s / f"{{shard}}.jsonl"
t = time.perf_counter()
if stage == "ingest":
    module.run_shard(listing=cache / "shards" / f"{{shard}}.tsv", images_root=images, output=out, shard=shard, limits=limits, allow_outside_root=False)
elif stage == "gate":
    module.run_shard(ingest=src("ingest"), images_root=images, output=out, shard=shard, threads=2, limits=limits, **config["gate"])
elif stage == "ocr":
    module.run_shard(ingest=src("ingest"), gate=src("gate"), images_root=images, output=out, shard=shard, threads=2, limits=limits, **config["ocr"])
elif stage == "detect":
    module.run_shard(ingest=src("ingest"), images_root=images, output=out, shard=shard, options=stage_params(config, "detect")["options"], threads=2, limits=limits)
elif stage == "regions":
    module.run_shard(detect=src("detect"), output=out, shard=shard, options=stage_params(config, "regions")["options"], threads=1)
else:
    module.run_shard(regions=src("regions"), ocr=src("ocr"), output=out, shard=shard, options=config["embed"], threads=2)
t_run = time.perf_counter() - t
print(json.dumps({{"imports": t_import, "model_load": t_load, "run": t_run, "in_process": time.perf_counter() - t0}}))
"""


def read_tsv_seconds(path: Path) -> float:
    with path.open() as handle:
        row = next(csv.DictReader(handle, delimiter="\t"))
    return float(row["s"])


def job_summary_seconds(path: Path) -> float:
    for line in reversed(path.read_text(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{") and '"stage"' in line:
            return float(json.loads(line)["seconds"])
    raise ValueError(f"{path}: no closing JSON summary line")


def run_bare(images: Path, work: Path) -> dict:
    cache = work / "cache"
    if cache.exists():
        shutil.rmtree(cache)
    proc = subprocess.run([PYTHON, "-c", BARE.format(repo=str(REPO), images=str(images), cache=str(cache))], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_workflow(images: Path, work: Path, n_images: int, size: int) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    count = max(1, math.ceil(n_images / size))
    write_workdir_config(work, images, shards={"count": count})
    wall, _ = run_snakemake(work, "--cores", "2", "--until", "embed")
    # the same command again finds nothing to do: Snakemake's own fixed cost (start, listing, DAG)
    noop, _ = run_snakemake(work, "--cores", "2", "--until", "embed")
    per_rule = {}
    for stage in STAGES:
        tsvs = sorted((work / "benchmarks" / stage).glob("*.tsv"))
        job_s = [read_tsv_seconds(p) for p in tsvs]
        inside = [job_summary_seconds(work / "logs" / stage / f"{p.stem}.log") for p in tsvs]
        per_rule[stage] = {"jobs": len(tsvs), "job_s": sum(job_s), "inside_s": sum(inside)}
    shards = sorted(p.stem for p in (work / "benchmarks" / "ingest").glob("*.tsv"))
    return {"size": size, "count": count, "shards": len(shards), "wall": wall, "noop": noop, "rules": per_rule, "first_shard": shards[0]}


def startup_costs() -> dict:
    """Median of 3: a bare Python start, and the start + import of Snakemake's script preamble."""

    def timed(code: str) -> float:
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([PYTHON, "-c", code], check=True, capture_output=True)
            runs.append(time.perf_counter() - t0)
        return sorted(runs)[1]

    return {"python": timed("pass"), "preamble": timed("import pickle; from snakemake import script")}


def profile_jobs(images: Path, work: Path, shard: str) -> dict:
    result = {}
    for stage in STAGES:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [PYTHON, "-c", PROFILE_JOB.format(repo=str(REPO), stage=stage, shard=shard, work=str(work), images=str(images))],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-4000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["wall"] = wall
        result[stage] = r
        log(f"profile {stage}: {r}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 100, 500], help="images per shard")
    parser.add_argument("--default-size", type=int, default=100, help="the shard size the target applies to")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--text-fraction", type=float, default=0.3)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--bare-repeats", type=int, default=1, help="bare runs: 1 before the workflow runs, a 2nd after")
    add_common_args(parser)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="shardlens-overhead-")) if args.keep is None else args.keep
    tmp.mkdir(parents=True, exist_ok=True)
    images = tmp / "images"
    log(f"generating {args.images} images in {images}")
    truth = generate_images(images, args.images, text_fraction=args.text_fraction, size=(args.width, args.height))
    n_text = sum(t["has_text"] for t in truth.values())

    load_before = wait_for_quiet(args.max_load, args.max_wait)
    log("bare run 1 (one process, one shard)")
    bare = [run_bare(images, tmp / "bare")]
    runs = []
    for size in args.sizes:
        log(f"workflow, {size} images per shard")
        runs.append(run_workflow(images, tmp / f"wf{size}", args.images, size))
        r = runs[-1]
        log(f"  wall {r['wall']:.1f} s ({args.images / r['wall']:.2f} images/s), no-op run {r['noop']:.1f} s")
    if args.bare_repeats > 1:
        log("bare run 2")
        bare.append(run_bare(images, tmp / "bare"))
    bare_stage = {s: sum(b["stages"][s] for b in bare) / len(bare) for s in STAGES}
    bare_s = sum(bare_stage.values())
    bare_rate = args.images / bare_s

    lines = [
        f"{args.images} generated images ({args.width}x{args.height}; {n_text} with rendered text, the rest scikit-image photo crops), "
        f"default config. Bare: the five `run_shard` calls on one shard of all {args.images} images in one process "
        f"(threads=2; imports {sum(b['import_s'] for b in bare) / len(bare):.1f} s left out; "
        + (
            f"mean of a run before and after the workflow runs: {sum(bare[0]['stages'].values()):.1f} s and {sum(bare[1]['stages'].values()):.1f} s). "
            if len(bare) > 1
            else "one run, before the workflow runs). "
        )
        + "Workflow: wall time of `snakemake --cores 2 --until embed` in a fresh workdir.",
        "",
        "| images per shard | shards | jobs | workflow wall (s) | workflow images/s | bare (s) | bare images/s | ratio (workflow / bare) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        jobs = sum(v["jobs"] for v in r["rules"].values())
        rate = args.images / r["wall"]
        mark = " (target ≥ 0.95)" if r["size"] == args.default_size else ""
        lines.append(
            f"| {r['size']} | {r['shards']} | {jobs} | {r['wall']:.1f} | {rate:.2f} | {bare_s:.1f} | {bare_rate:.2f} | **{rate / bare_rate:.2f}**{mark} |"
        )

    lines += [
        "",
        "Where the workflow's time goes (seconds, summed over the jobs of each rule; a job's wall time is its "
        "benchmark TSV, 'inside' is the time inside `run_shard` from its closing log line, i.e. model load + work; "
        "'outside' = Python start + Snakemake's script preamble + imports):",
        "",
        "| images per shard | rule | jobs | Σ job wall | Σ inside run_shard | Σ outside | bare (one shard) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for stage in STAGES:
            v = r["rules"][stage]
            lines.append(
                f"| {r['size']} | {stage} | {v['jobs']} | {v['job_s']:.1f} | {v['inside_s']:.1f} | {v['job_s'] - v['inside_s']:.1f} | {bare_stage[stage]:.1f} |"
            )
        total_job = sum(v["job_s"] for v in r["rules"].values())
        lines.append(
            f"| {r['size']} | **Snakemake** (wall − Σ job wall; ingest jobs run 2 at a time) | | {r['wall'] - total_job:+.1f} | | "
            f"no-op re-run: {r['noop']:.1f} | |"
        )

    notes = []
    if not args.no_profile:
        small = min(runs, key=lambda r: r["size"])
        log(f"startup costs and timed sections of one job per stage ({small['size']}-image shard {small['first_shard']})")
        try:
            start = startup_costs()
            prof = profile_jobs(images, tmp / f"wf{small['size']}", small["first_shard"])
        except (SystemExit, Exception) as exc:  # the tables above still count
            log(f"profiling failed: {exc}")
            prof = None
    if not args.no_profile and prof is not None:
        lines += [
            "",
            f"One job of each stage on one {small['size']}-image shard in a fresh process, in timed sections "
            f"(`PROFILE_JOB` in this script; seconds). A bare `python -c pass` takes {start['python']:.2f} s; "
            f"`from snakemake import script` (what each job's script preamble imports to unpickle its `snakemake` "
            f"object) {start['preamble']:.2f} s. 'work' = run_shard minus a second model load inside it.",
            "",
            "| stage | process wall | Python start | imports (stage + its libraries) | model load | work (run_shard − model load) | start + imports + load share of the job |",
            "|---|---|---|---|---|---|---|",
        ]
        for stage in STAGES:
            p = prof[stage]
            pystart = max(0.0, p["wall"] - p["in_process"])
            work = max(0.0, p["run"] - p["model_load"])
            fixed = pystart + p["imports"] + p["model_load"] + start["preamble"]
            lines.append(
                f"| {stage} | {p['wall']:.2f} | {pystart:.2f} | {p['imports']:.2f} | {p['model_load']:.2f} | {work:.2f} | {fixed / (fixed + work):.0%} |"
            )

    emit(
        "Workflow overhead: snakemake vs the bare stage functions",
        command_line(),
        load_before,
        lines,
        notes,
        append=args.append,
    )
    if args.keep is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
