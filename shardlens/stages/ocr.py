"""OCR stage: recognise text lines of the images the gate let through."""

from __future__ import annotations

from pathlib import Path

from ..images.decoding import Limits
from ..jobs import JobSummary, Progress, job_logger, prefetch
from ..models.language import LanguageGuesser
from ..models.ocr_engines import make_ocr_engine
from ..options import OCROptions
from ..records import SCHEMA_VERSION, read_jsonl, write_jsonl
from .inputs import distinct_images, load_rgb


def run_shard(ingest: str | Path, gate: str | Path, images_root: str | Path, output: str | Path, shard: str, threads: int, limits: Limits, **options) -> dict:
    """The OCR rule's entry, called as scripts/ocr.py calls it (see shardlens/options.py):
    ``options`` are the rule's ``ocr`` config values; an unknown one is an error."""
    return run(ingest, gate, images_root, output, shard, OCROptions.from_values(options), threads, limits)


def run(
    ingest: str | Path, gate: str | Path, images_root: str | Path, output: str | Path, shard: str, options: OCROptions, threads: int, limits: Limits
) -> dict:
    """Write ``cache/ocr/{shard}.jsonl``: the text lines of the images the gate let through."""
    logger = job_logger("ocr")
    root = Path(images_root)
    to_ocr = {r["image_id"] for r in read_jsonl(gate, "gate") if r["decision"] == "ocr"}
    images = [im for im in distinct_images(ingest) if im.image_id in to_ocr]
    summary = JobSummary(shard=shard, stage="ocr", images=len(images))
    if not images:  # nothing gated in: no model to load
        summary.records = write_jsonl(output, "ocr", [])
        return summary.finish()
    ocr = make_ocr_engine(options, threads)
    guesser = LanguageGuesser(options.language)
    progress = Progress(logger, f"ocr {shard}", len(images))
    records = []
    for image, rgb in prefetch(images, lambda im: load_rgb(root, im, limits)):
        progress.step()
        if isinstance(rgb, BaseException):
            logger.warning("%s: cannot decode any more (%s); skipped", image.path, rgb)
            summary.errors += 1
            continue
        lines = ocr.recognize(rgb)
        summary.ok += 1
        for line_no, line in enumerate(lines):
            guess = guesser.guess(line.text)
            records.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "image_id": image.image_id,
                    "line_no": line_no,
                    "region_id": None,
                    "text": line.text,
                    "confidence": round(line.confidence, 6),
                    "language": guess.language,
                    "language_confidence": guess.confidence,
                    "bbox": [round(v, 2) for v in line.bbox],
                    "source": ocr.source,
                }
            )
    summary.records = write_jsonl(output, "ocr", records)
    summary.extra = {"lines": summary.records}
    return summary.finish()
