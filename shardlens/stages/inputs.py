"""Reading a shard's ingest output: the distinct images downstream stages work on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..images.decoding import ImageError, Limits, fit_within, open_image, read_bytes, to_rgb_array
from ..records import RecordError, read_jsonl
from ..shards import read_listing


class IncompleteIngestError(RecordError):
    """An ingest file that does not hold one record per path of its shard listing."""


@dataclass(frozen=True, slots=True)
class ShardImage:
    image_id: str
    path: str  # the first path (in path order) that holds this content
    ok: bool
    width: int | None = None  # EXIF-oriented size from ingest
    height: int | None = None


def distinct_images(ingest_path: str | Path) -> list[ShardImage]:
    """One entry per distinct content (image_id) in the shard, in path order.

    Identical files under several paths are processed once; the catalog keeps every path.
    Files that could not be read at all (no image_id) have nothing to process.
    """
    records = list(read_jsonl(ingest_path, "ingest"))
    check_covers_listing(ingest_path, records)
    seen: dict[str, ShardImage] = {}
    for record in records:
        image_id = record["image_id"]
        if image_id is None:
            continue
        ok = record["status"] == "ok"
        previous = seen.get(image_id)
        if previous is None or (ok and not previous.ok):
            seen[image_id] = ShardImage(image_id, record["path"], ok, record["width"], record["height"])
    return list(seen.values())


def check_covers_listing(ingest_path: str | Path, records: list[dict]) -> None:
    """Raise unless the ingest file has exactly one record per path of its shard's listing.

    Stage outputs are written atomically, so a shorter file was cut or edited after ingest wrote
    it (a bad copy, a full disk, a hand edit). Snakemake takes a changed file for an edit and
    re-runs what depends on it, which would silently drop the missing images; this check stops
    that, naming the file. Only files in the cache layout (``.../ingest/{shard}.jsonl`` beside
    ``.../shards/{shard}.tsv``) are checked.

    The listing is found by the cache layout, not declared as an input of the gate, OCR and detect
    rules: it is an input of their input (ingest), so it changes nothing about when they run, and
    declaring it would make Snakemake re-run those stages for every shard once after an upgrade
    (its trigger on a changed set of inputs), hours of GPU work on a large collection.
    """
    ingest_path = Path(ingest_path)
    listing = ingest_path.parent.parent / "shards" / f"{ingest_path.stem}.tsv"
    if ingest_path.parent.name != "ingest" or not listing.is_file():
        return
    listed = read_listing(listing)
    got = [r["path"] for r in records]
    if sorted(listed) == sorted(got):
        return
    missing = sorted(set(listed) - set(got))
    extra = sorted(set(got) - set(listed))
    parts = []
    if missing:
        parts.append(f"no record for {len(missing)} listed path(s) ({', '.join(repr(p) for p in missing[:3])}{', ...' if len(missing) > 3 else ''})")
    if extra:
        parts.append(f"records for {len(extra)} path(s) not in the listing ({', '.join(repr(p) for p in extra[:3])}{', ...' if len(extra) > 3 else ''})")
    if not parts:
        parts.append("paths recorded more than once")
    raise IncompleteIngestError(
        f"{ingest_path} does not match its listing {listing}: {'; '.join(parts)}. It was truncated or edited "
        f"after ingest wrote it: run `snakemake --cores all --forcerun {ingest_path}` to remake it and everything "
        "made from it"
    )


def load_rgb(root: Path, image: ShardImage, limits: Limits, max_side: int | None = None) -> np.ndarray:
    """Decode an ingested image to RGB, EXIF-oriented, optionally fitted within ``max_side``.

    The bytes must still be the ones ingest hashed: a file changed (or deleted) since ingest
    raises :class:`ImageError` instead of giving its new content the old ``image_id``; the
    changed file's listing entry (size, mtime) makes the next run ingest its shard again."""
    data = read_bytes(root / image.path, limits)
    if hashlib.sha256(data).hexdigest() != image.image_id:
        raise ImageError(
            "changed",
            f"{image.path} changed after ingest (its bytes no longer match image_id {image.image_id[:12]}); "
            "it is skipped now and ingested again on the next run",
        )
    decoded = open_image(data, limits, draft_size=max_side, name=image.path)
    if max_side is not None:
        decoded, _ = fit_within(decoded, max_side)
    return to_rgb_array(decoded)
