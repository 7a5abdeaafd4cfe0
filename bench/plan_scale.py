"""Planning cost at scale: listing + shard assignment for many paths, `snakemake -n` wall time,
and what a re-run costs after one image changes.

Planning needs no images: a generated list file names paths that do not exist (they would be
ingested as `not_found`). Each `snakemake -n` gets `--dry-run-timeout` seconds; one that runs
past it is reported as such. The re-run part needs real files: `--rerun-images` tiny generated
PNGs in `--rerun-shards` shards, the workflow run once (`--rerun-until ingest` by default: a full
run of 1,000 shards is 5,000+ jobs, hours on 2 cores), then one image is rewritten and
`snakemake -n` counts the planned jobs and a real run is timed, both with the same target.
Prints tables and, with --append, adds them to BENCHMARKS.md.

    python bench/plan_scale.py --paths 1000000 --shards 1000 10000 100000 --parts plan
    python bench/plan_scale.py --parts rerun --rerun-images 2000 --rerun-shards 1000

The shard-size curve (`--parts curve --sizes 100 250 500 1000 2000`), what picks `shards.size`:
for each size, `snakemake -n` (plain, as a user types it) for `--curve-paths` listed paths with
`shards.size` = that size (the count is the next power of two of paths / size), and the wall time
of one shard's stages (`--until embed`: ingest, gate, OCR, detect, embed) on that many generated
images (bench/_common.generate_images, `--text-fraction`), which is what one changed image
re-runs. With `--curve-verify-rerun`, the smallest size also changes one image and times the
real re-run, to show that it costs what the shard's first run cost.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from shardlens.images.listing import list_images  # noqa: E402
from shardlens.shards import plan_shards, shard_count_for, write_listings  # noqa: E402

from _common import add_common_args, command_line, emit, generate_images, log, planned_jobs, run_snakemake, wait_for_quiet, write_workdir_config  # noqa: E402


def make_listing(folder: Path, n: int) -> Path:
    listing = folder / "images.txt"
    with listing.open("w") as handle:
        for i in range(n):
            handle.write(f"camera{i % 97:02d}/day{i % 365:03d}/img_{i:08d}.jpg\n")
    return listing


def time_parse(root: Path, listing: Path, shards: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    images = list_images(root, list_file=listing)
    t1 = time.perf_counter()
    plan = plan_shards(images, shards)
    t2 = time.perf_counter()
    write_listings(plan, root / "cache" / "shards")
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def time_dry_run(workdir: Path, listing: Path, shards: int, timeout: float | None = None) -> tuple[float, int]:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(f"images: {workdir / 'images'}\nlisting: {{list_file: {listing}}}\nshards: {{count: {shards}}}\n")
    (workdir / "images").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "--quiet", "rules"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, -1
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    total = next((int(line.split()[-1]) for line in proc.stdout.splitlines() if line.startswith("total")), -1)
    return elapsed, total


def tiny_images(root: Path, n: int) -> list[str]:
    """``n`` distinct 48x48 PNGs (a colour and a random dot pattern), deterministic."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(11)
    paths = []
    for i in range(n):
        rel = f"d{i % 50:02d}/img_{i:05d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        arr = np.full((48, 48, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        arr[rng.random((48, 48)) < 0.1] = 255
        Image.fromarray(arr).save(root / rel)
        paths.append(rel)
    return paths


def measure_rerun(work: Path, n_images: int, shards: int, until: str | None, timeout: float) -> dict:
    images = work / "images"
    log(f"re-run: generating {n_images} tiny images")
    paths = tiny_images(images, n_images)
    write_workdir_config(work, images, shards={"count": shards})
    target = ["--until", until] if until else []
    log(f"re-run: first run ({shards} shards, target {'--until ' + until if until else 'all'}); this takes a while")
    first_s, proc = run_snakemake(work, "--cores", "2", *target, timeout=timeout)
    first_jobs = planned_jobs(proc.stdout + proc.stderr)
    log(f"  first run {first_s:.1f} s, jobs {first_jobs}")
    noop_s, _ = run_snakemake(work, "-n", *target, timeout=timeout)
    changed = images / paths[len(paths) // 2]
    from PIL import Image

    Image.new("RGB", (48, 48), (1, 2, 3)).save(changed)
    log(f"re-run: changed {changed.relative_to(images)}")
    dry_s, proc = run_snakemake(work, "-n", *target, timeout=timeout)
    dry_jobs = planned_jobs(proc.stdout + proc.stderr)
    rerun_s, proc = run_snakemake(work, "--cores", "2", *target, timeout=timeout)
    rerun_jobs = planned_jobs(proc.stdout + proc.stderr)
    after_s, proc = run_snakemake(work, "-n", *target, timeout=timeout)
    left = planned_jobs(proc.stdout + proc.stderr)
    log(f"  -n {dry_s:.1f} s {dry_jobs}; re-run {rerun_s:.1f} s {rerun_jobs}; then -n plans {left or 'nothing'}")
    return {
        "first_s": first_s,
        "first_jobs": first_jobs,
        "noop_s": noop_s,
        "dry_s": dry_s,
        "dry_jobs": dry_jobs,
        "rerun_s": rerun_s,
        "rerun_jobs": rerun_jobs,
        "left": left,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=["plan", "rerun", "curve"], default=["plan", "rerun"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 250, 500, 1000, 2000], help="shards.size values of the curve")
    parser.add_argument("--curve-paths", type=int, default=1_000_000, help="listed paths for the curve's snakemake -n")
    parser.add_argument("--curve-timeout", type=float, default=180, help="seconds one curve snakemake -n may take")
    parser.add_argument("--text-fraction", type=float, default=0.3, help="text images in the curve's shard")
    parser.add_argument("--curve-verify-rerun", action="store_true")
    parser.add_argument("--curve-plan-only", action="store_true", help="only the snakemake -n column")
    parser.add_argument("--paths", type=int, default=1_000_000, help="paths in the parse-time measurement")
    parser.add_argument("--shards", type=int, nargs="+", default=[1000, 10000, 100000], help="shard counts for snakemake -n")
    parser.add_argument("--dry-run-paths-per-shard", type=int, default=10)
    parser.add_argument("--dry-run-timeout", type=float, default=900, help="seconds one snakemake -n may take")
    parser.add_argument("--rerun-images", type=int, default=2000)
    parser.add_argument("--rerun-shards", type=int, default=1000)
    parser.add_argument("--rerun-until", default="ingest", help="rule given to --until in both runs ('' = the full workflow)")
    add_common_args(parser)
    args = parser.parse_args()

    if "plan" in args.parts:
        plan_part(args)
    if "rerun" in args.parts:
        rerun_part(args)
    if "curve" in args.parts:
        curve_part(args)


def plan_part(args) -> None:
    load_before = wait_for_quiet(args.max_load, args.max_wait)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "parse"
        root.mkdir()
        listing = make_listing(root, args.paths)
        log(f"parse {args.paths:,} paths")
        read_s, assign_s, write_s = time_parse(root, listing, 1000)
        rows.append(
            f"| parse: list {args.paths:,} paths + assign 1,000 shards + write listings | – | {read_s + assign_s + write_s:.2f} s (list {read_s:.2f}, assign {assign_s:.2f}, write {write_s:.2f}) |"
        )
        for shards in args.shards:
            work = tmp / f"dry{shards}"
            work.mkdir()
            lst = make_listing(work, shards * args.dry_run_paths_per_shard)
            log(f"snakemake -n, {shards:,} shards (timeout {args.dry_run_timeout:.0f} s)")
            elapsed, jobs = time_dry_run(work, lst, shards, timeout=args.dry_run_timeout)
            shown = f"{elapsed:.1f} s" if jobs >= 0 else f"> {args.dry_run_timeout:.0f} s (stopped at the timeout)"
            planned = f"{jobs:,}" if jobs >= 0 else f"≈ {5 * shards + 4:,} (5 per shard + 4)"
            rows.append(f"| `snakemake -n`, {shards:,} shards ({shards * args.dry_run_paths_per_shard:,} paths) | {planned} | {shown} |")
            log(rows[-1])
    lines = [
        "| what | jobs | wall time |",
        "|---|---|---|",
        *rows,
    ]
    emit("Planning at scale", command_line(), load_before, lines, append=args.append)


def rerun_part(args) -> None:
    load_before = wait_for_quiet(args.max_load, args.max_wait)
    with tempfile.TemporaryDirectory() as tmp:
        r = measure_rerun(Path(tmp), args.rerun_images, args.rerun_shards, args.rerun_until or None, timeout=args.dry_run_timeout * 4)

    def jobs(counts: dict) -> str:
        if not counts or not counts.get("total", sum(counts.values())):
            return "0 (nothing to be done)"
        return f"{counts.get('total', sum(counts.values()))} ({', '.join(f'{k} {v}' for k, v in counts.items() if k != 'total')})"

    target = f"`--until {args.rerun_until}`" if args.rerun_until else "the full workflow"
    lines = [
        f"{args.rerun_images:,} tiny generated PNGs in `shards.count: {args.rerun_shards}`; both runs with {target}"
        + (" (a full first run of this many shards is 5 jobs per shard, each a Python process: hours on 2 cores)." if args.rerun_until else "."),
        "",
        "| step | jobs | wall time |",
        "|---|---|---|",
        f"| first run, `--cores 2` | {jobs(r['first_jobs'])} | {r['first_s']:.1f} s |",
        f"| `snakemake -n` with nothing changed | 0 | {r['noop_s']:.1f} s |",
        f"| one image rewritten: `snakemake -n` | {jobs(r['dry_jobs'])} | {r['dry_s']:.1f} s |",
        f"| one image rewritten: re-run, `--cores 2` | {jobs(r['rerun_jobs'])} | {r['rerun_s']:.1f} s |",
        f"| `snakemake -n` after the re-run | {jobs(r['left'])} | |",
    ]
    emit("Re-run after one image changes", command_line(), load_before, lines, append=args.append)


def plain_dry_run(workdir: Path, listing: Path, size: int, timeout: float) -> tuple[float, int]:
    """`snakemake -n` as a user types it (job list printed) with ``shards.size``."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "images").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(f"images: {workdir / 'images'}\nlisting: {{list_file: {listing}}}\nshards: {{size: {size}}}\n")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n"]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, -1
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    counts = planned_jobs(proc.stdout + proc.stderr)
    return time.perf_counter() - t0, counts.get("total", -1)


def curve_part(args) -> None:
    load_before = wait_for_quiet(args.max_load, args.max_wait)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        listing = make_listing(tmp, args.curve_paths)
        t0 = time.perf_counter()
        listed = list_images(tmp, list_file=listing)
        t1 = time.perf_counter()
        plan = plan_shards(listed, shard_count_for(args.curve_paths, None, min(args.sizes, key=lambda s: abs(s - 500))))
        t2 = time.perf_counter()
        from shardlens.shards import listing_text

        for name in plan.names:
            listing_text(plan.shards[name])
        ours = (t1 - t0, t2 - t1, time.perf_counter() - t2, plan.count)
        pool = tmp / "pool"
        if not args.curve_plan_only:
            log(f"generating {max(args.sizes)} images ({args.text_fraction:.0%} with text)")
            generate_images(pool, max(args.sizes), text_fraction=args.text_fraction, seed=3, size=(640, 480))
        pool_files = sorted((p for p in pool.rglob("*") if p.is_file()), key=lambda p: hashlib.sha256(p.name.encode()).hexdigest()) if pool.exists() else []
        verified = None
        for size in args.sizes:
            count = shard_count_for(args.curve_paths, None, size)
            log(f"size {size}: snakemake -n for {args.curve_paths:,} paths ({count:,} shards)")
            dry_s, jobs = plain_dry_run(tmp / f"dry{size}", listing, size, args.curve_timeout)
            if args.curve_plan_only:
                dry = f"{dry_s:.1f} s" if jobs >= 0 else f"> {args.curve_timeout:.0f} s (stopped)"
                rows.append(f"| {size:,} | {count:,} | {jobs:,} | {dry} | – |")
                log(rows[-1])
                continue
            work = tmp / f"run{size}"
            images = work / "images"
            for f in pool_files[:size]:  # the first `size` of a shuffled pool: same text fraction
                (images / f.relative_to(pool)).parent.mkdir(parents=True, exist_ok=True)
                os.link(f, images / f.relative_to(pool))  # hard links: real files to the walk
            write_workdir_config(work, images, shards={"count": 1})
            log(f"size {size}: one shard's stages on {size} images")
            run_s, proc = run_snakemake(work, "--cores", "2", "--until", "embed")
            if args.curve_verify_rerun and size == min(args.sizes):
                from PIL import Image

                changed = next(p for p in sorted(images.rglob("*.jpg")))
                target = Image.open(changed)
                target.load()
                changed.unlink()
                target.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed, quality=90)
                rerun_s, proc = run_snakemake(work, "--cores", "2", "--until", "embed")
                verified = (size, run_s, rerun_s, planned_jobs(proc.stdout + proc.stderr))
            dry = f"{dry_s:.1f} s" if jobs >= 0 else f"> {args.curve_timeout:.0f} s (stopped)"
            rows.append(
                f"| {size:,} | {count:,} | {jobs:,} | {dry} | {run_s:.0f} s ({run_s / size * 1000:.0f} ms/image) |"
                if jobs >= 0
                else f"| {size:,} | {count:,} | – | {dry} | {run_s:.0f} s ({run_s / size * 1000:.0f} ms/image) |"
            )
            log(rows[-1])
    lines = [
        f"`snakemake -n` (plain, job list printed) for {args.curve_paths:,} listed paths at each `shards.size`; one shard's stages = "
        f"`snakemake --cores 2 --until embed` on `size` generated 640x480 images ({args.text_fraction:.0%} with rendered text, the rest "
        "scikit-image photo crops) in one shard, fresh workdir: what a re-run costs after one image of that shard changed. "
        "Targets: `-n` ≤ 30 s, one shard's re-run ≤ 3 min (180 s).",
        "",
        "| shards.size | shards for 1M paths | jobs planned | `snakemake -n` | one shard's stages |",
        "|---|---|---|---|---|",
        *rows,
    ]
    lines += [
        "",
        f"Our share of a plan, in one process ({args.curve_paths:,} paths, {ours[3]:,} shards): listing the paths (read the list file, stat each) "
        f"{ours[0]:.1f} s, assigning shards {ours[1]:.1f} s, every shard's listing text {ours[2]:.1f} s; the rest of `snakemake -n` is Snakemake "
        "(parsing, DAG building, printing the jobs).",
    ]
    if verified:
        size, run_s, rerun_s, counts = verified
        lines += [
            "",
            f"Check at size {size}: after one image was rewritten, the re-run planned {counts} and took {rerun_s:.0f} s (the shard's first run: {run_s:.0f} s).",
        ]
    emit("Shard size: planning a million paths against re-running one shard", command_line(), load_before, lines, append=args.append)


if __name__ == "__main__":
    main()
