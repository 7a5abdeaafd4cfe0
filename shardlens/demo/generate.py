"""Writing the demo collection: the images, ``ground_truth.json`` and ``CREDITS.md``."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from PIL import Image

from ..atomic import atomic_open
from .notext_images import NOTEXT_RENDERERS, image_rng
from .sources import load_source, source_label, strip_metadata
from .tables import DATA_DIR, FONT_FILES, NOTEXT_IMAGES, PHOTOS, TEXT_IMAGES
from .text_images import TEXT_RENDERERS

JPEG_QUALITY = 90
WEBP_QUALITY = 90


def encode_image(img: Image.Image, suffix: str) -> bytes:
    """Encode without metadata; the format follows the (case-insensitive) suffix."""
    img = strip_metadata(img)
    buffer = io.BytesIO()
    suffix = suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        img.save(buffer, "JPEG", quality=JPEG_QUALITY)
    elif suffix == ".png":
        img.save(buffer, "PNG")
    elif suffix == ".webp":
        img.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
    else:
        raise ValueError(f"unsupported image suffix {suffix!r}")
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    with atomic_open(path, "wb", durable=False) as handle:
        handle.write(data)


def _record(category: str, source: str, **overrides: Any) -> dict[str, Any]:
    record = {"category": category, "lines": [], "clean": False, "rotation": 0, "language": None, "objects": [], "has_text": False, "source": source}
    record.update(overrides)
    return record


def _photo_entries() -> list[tuple[str, Image.Image, dict[str, Any]]]:
    entries = []
    for spec in PHOTOS:
        record = _record(
            "photo", source_label(spec["source"]), objects=list(spec["objects"]), has_text=spec.get("has_text", False), language=spec.get("language")
        )
        entries.append((spec["path"], load_source(spec["source"]), record))
    return entries


def _text_entries() -> list[tuple[str, Image.Image, dict[str, Any]]]:
    entries = []
    for spec in TEXT_IMAGES:
        img = TEXT_RENDERERS[spec["kind"]](spec)
        font_name = FONT_FILES[spec["font"]]
        if spec["kind"] == "sign":
            source = f"generated: {font_name} sign on a crop of {source_label(spec['photo'])}"
        else:
            source = f"generated: {font_name} {spec['kind']}"
        record = _record(
            "text",
            source,
            lines=list(spec["lines"]),
            has_text=True,
            clean=spec.get("clean", False),
            rotation=spec.get("rotation", 0),
            language=spec.get("language", "en"),
        )
        entries.append((spec["path"], img, record))
    return entries


def _notext_entries() -> list[tuple[str, Image.Image, dict[str, Any]]]:
    entries = []
    for index, spec in enumerate(NOTEXT_IMAGES):
        img = NOTEXT_RENDERERS[spec["kind"]](spec, image_rng(index))
        if spec["kind"] == "crop":
            source = f"crop of {source_label(spec['photo'])}"
        else:
            source = f"generated: {spec['kind']}"
        record = _record("notext", source, objects=list(spec.get("objects", [])))
        entries.append((spec["path"], img, record))
    return entries


def generate_demo(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Write the demo collection into ``out_dir`` and return its ground truth.

    Creates ``out_dir`` if needed and overwrites files written by an earlier
    run. Output bytes depend only on the installed package versions.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ground_truth: dict[str, dict[str, Any]] = {}
    for relative, img, record in _photo_entries() + _text_entries() + _notext_entries():
        if relative in ground_truth:
            raise ValueError(f"duplicate demo path {relative}")
        write_atomic(out / relative, encode_image(img, Path(relative).suffix))
        ground_truth[relative] = record
    ground_truth = dict(sorted(ground_truth.items()))
    text = json.dumps(ground_truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    write_atomic(out / "ground_truth.json", text.encode("utf-8"))
    write_atomic(out / "CREDITS.md", (DATA_DIR / "CREDITS.md").read_bytes())
    return ground_truth


def run_demo_images(out_dir: str | Path) -> dict:
    """The workflow's demo_images job: :func:`generate_demo`, then the job's JSON summary line."""
    from ..jobs import JobSummary

    summary = JobSummary(shard="all", stage="demo_images")
    truth = generate_demo(out_dir)
    summary.images = summary.ok = summary.records = len(truth)
    return summary.finish()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the shardlens demo image collection.")
    parser.add_argument("out_dir", type=Path, help="output directory (created if missing)")
    args = parser.parse_args(argv)
    ground_truth = generate_demo(args.out_dir)
    counts: dict[str, int] = {}
    for record in ground_truth.values():
        counts[record["category"]] = counts.get(record["category"], 0) + 1
    summary = ", ".join(f"{n} {category}" for category, n in sorted(counts.items()))
    print(f"wrote {len(ground_truth)} images ({summary}) to {args.out_dir}")
