"""Stable assignment of images to shards, and the per-shard listing files that trigger re-runs.

An image's shard depends only on its path (a hash of it, modulo the shard count), so adding,
removing or editing one image changes exactly one shard. Each shard's listing file
``cache/shards/{shard}.tsv`` holds ``path, size, mtime_ns`` of its images and is rewritten only
when that content changes: Snakemake's mtime trigger then re-runs only that shard's stages.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_open
from .images.listing import ListedImage

LISTING_HEADER = "path\tsize\tmtime_ns\n"


def shard_count_for(n_images: int, count: int | None, size: int | None) -> int:
    """The shard count: ``count`` if given, else the next power of two ≥ n_images / size.

    With ``size``, the count only changes when the collection crosses a power of two (doubles),
    which re-shards everything once; set ``count`` to pin it.
    """
    if count:
        return count
    if not size:
        raise ValueError("set shards.count or shards.size")
    wanted = max(1, math.ceil(n_images / size))
    return 1 << (wanted - 1).bit_length()


def shard_width(count: int) -> int:
    return max(4, len(str(count - 1)))


def shard_of(path: str, count: int) -> int:
    """Shard index of a path: first 8 bytes of its blake2b digest, modulo the count."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_names(count: int) -> list[str]:
    width = shard_width(count)
    return [f"{i:0{width}d}" for i in range(count)]


@dataclass(frozen=True)
class ShardPlan:
    """Which images fall in which shard."""

    count: int
    shards: dict[str, list[ListedImage]]

    @property
    def names(self) -> list[str]:
        """Shards that hold at least one image, in order (empty shards get no jobs)."""
        return [name for name, images in self.shards.items() if images]

    @property
    def n_images(self) -> int:
        return sum(len(v) for v in self.shards.values())


def plan_shards(images: list[ListedImage], count: int) -> ShardPlan:
    names = shard_names(count)
    shards: dict[str, list[ListedImage]] = {name: [] for name in names}
    for image in images:
        shards[names[shard_of(image.path, count)]].append(image)
    for members in shards.values():
        members.sort(key=lambda e: e.path)
    return ShardPlan(count=count, shards=shards)


def listing_text(images: list[ListedImage]) -> str:
    lines = [LISTING_HEADER]
    for image in images:
        if "\t" in image.path or "\n" in image.path or "\r" in image.path:
            # tabs/newlines in names are escaped so the listing stays one line per image
            path = image.path.encode("unicode_escape").decode("ascii")
            lines.append(f"{path}\t{image.size}\t{image.mtime_ns}\tescaped\n")
        else:
            lines.append(f"{image.path}\t{image.size}\t{image.mtime_ns}\n")
    return "".join(lines)


def write_listing(target: str | Path, text: str) -> None:
    """Write a listing (a shard's, or the walk's skipped entries) atomically."""
    with atomic_open(target, "w", newline="\n") as handle:
        handle.write(text)


def write_listings(plan: ShardPlan, folder: str | Path) -> list[str]:
    """Write the listing of every shard of ``plan`` whose content differs from the file there;
    return the shards written. For tools that run stages without Snakemake (benchmarks, tests):
    the workflow writes each listing in its shard_listing job."""
    folder = Path(folder)
    written = []
    for name in plan.names:
        target = folder / f"{name}.tsv"
        text = listing_text(plan.shards[name])
        try:
            if target.read_text(encoding="utf-8") == text:
                continue
        except (FileNotFoundError, UnicodeDecodeError):
            pass
        write_listing(target, text)
        written.append(name)
    return written


def run_listing(text: str, target: str | Path, shard: str, stage: str) -> dict:
    """The shard_listing and listing_skipped jobs: write the plan's text, log the summary line
    (``images``: the entries listed, after the header line). The text comes first, unlike the
    writers: scripts/shard_listing.py calls it so, and a changed script would re-run every shard's
    listing job on an existing cache (and, through the rewritten listings, every stage)."""
    from .jobs import JobSummary

    entries = max(0, text.count("\n") - 1)
    summary = JobSummary(shard=shard, stage=stage, images=entries, records=entries)
    write_listing(target, text)
    if stage == "shard_listing":
        summary.ok = entries
    else:
        summary.skipped = entries
    return summary.finish()


def read_listing(path: str | Path) -> list[str]:
    """Image paths (relative to the root) from a shard listing file."""
    out: list[str] = []
    with Path(path).open(encoding="utf-8") as handle:
        header = handle.readline()
        if header != LISTING_HEADER:
            raise ValueError(f"{path}: not a shard listing (bad header {header!r})")
        for line_no, line in enumerate(handle, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) not in (3, 4):
                raise ValueError(f"{path} line {line_no}: expected path, size, mtime_ns")
            rel = fields[0]
            if len(fields) == 4 and fields[3] == "escaped":
                rel = rel.encode("ascii").decode("unicode_escape")
            out.append(rel)
    return out
