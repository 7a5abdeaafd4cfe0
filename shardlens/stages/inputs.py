"""Reading a shard's ingest output: the distinct images downstream stages work on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..images import Limits, fit_within, open_image, to_rgb_array
from ..records import read_jsonl


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
    seen: dict[str, ShardImage] = {}
    for record in read_jsonl(ingest_path, "ingest"):
        image_id = record["image_id"]
        if image_id is None:
            continue
        ok = record["status"] == "ok"
        previous = seen.get(image_id)
        if previous is None or (ok and not previous.ok):
            seen[image_id] = ShardImage(image_id, record["path"], ok, record["width"], record["height"])
    return list(seen.values())


def load_rgb(root: Path, image: ShardImage, limits: Limits, max_side: int | None = None) -> np.ndarray:
    """Decode an ingested image to RGB, EXIF-oriented, optionally fitted within ``max_side``."""
    decoded = open_image(root / image.path, limits, draft_size=max_side, name=image.path)
    if max_side is not None:
        decoded, _ = fit_within(decoded, max_side)
    return to_rgb_array(decoded)
