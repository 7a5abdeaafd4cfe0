"""Planning cost at scale: listing + shard assignment for many paths, and `snakemake -n` wall time.

No images are needed: a generated list file names paths that do not exist (they would be
ingested as `not_found`). Prints a table and, with --append, adds it to BENCHMARKS.md.

    python bench/plan_scale.py --paths 1000000 --shards 1000 10000
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shardlens.images import list_images  # noqa: E402
from shardlens.shards import plan_shards, write_listings  # noqa: E402


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


def time_dry_run(workdir: Path, listing: Path, shards: int) -> tuple[float, int]:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(
        f"images: {workdir / 'images'}\nlisting: {{list_file: {listing}}}\nshards: {{count: {shards}}}\n"
    )
    (workdir / "images").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "--quiet", "rules"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    total = next((int(line.split()[-1]) for line in proc.stdout.splitlines() if line.startswith("total")), -1)
    return elapsed, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=1_000_000, help="paths in the parse-time measurement")
    parser.add_argument("--shards", type=int, nargs="+", default=[1000, 10000], help="shard counts for snakemake -n")
    parser.add_argument("--dry-run-paths-per-shard", type=int, default=10)
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "parse"
        root.mkdir()
        listing = make_listing(root, args.paths)
        read_s, assign_s, write_s = time_parse(root, listing, 1000)
        rows.append(f"| parse: list {args.paths:,} paths + assign 1,000 shards + write listings | {read_s + assign_s + write_s:.2f} s (list {read_s:.2f}, assign {assign_s:.2f}, write {write_s:.2f}) |")
        for shards in args.shards:
            work = tmp / f"dry{shards}"
            work.mkdir()
            lst = make_listing(work, shards * args.dry_run_paths_per_shard)
            elapsed, jobs = time_dry_run(work, lst, shards)
            rows.append(f"| `snakemake -n`, {shards:,} shards ({shards * args.dry_run_paths_per_shard:,} paths, {jobs:,} jobs) | {elapsed:.1f} s |")
    header = [
        f"### Planning at scale ({datetime.now(UTC):%Y-%m-%d}, {platform.node()}, {platform.processor() or platform.machine()}, 2 cores)",
        "",
        f"`python bench/plan_scale.py --paths {args.paths} --shards {' '.join(map(str, args.shards))}`",
        "",
        "| what | wall time |",
        "|---|---|",
    ]
    table = "\n".join(header + rows) + "\n"
    print(table)
    if args.append:
        with (REPO / "BENCHMARKS.md").open("a") as handle:
            handle.write("\n" + table)


if __name__ == "__main__":
    main()
