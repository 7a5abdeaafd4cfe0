"""OCR stage: recognise text lines of the images the gate let through."""

from __future__ import annotations

from pathlib import Path

from ..images.decoding import Limits
from ..jobs import JobSummary, Progress, job_logger, prefetch
from ..models.language import DEFAULT_LANGUAGES, LanguageGuesser
from ..models.ocr_engines import make_ocr_engine
from ..records import SCHEMA_VERSION, read_jsonl, write_jsonl
from .inputs import distinct_images, load_rgb


def run_shard(
    ingest: str | Path,
    gate: str | Path,
    images_root: str | Path,
    output: str | Path,
    shard: str,
    engine: str = "rapidocr",
    text_score: float = 0.5,
    box_thresh: float = 0.6,
    use_cls: bool = True,
    max_side: int = 2000,
    min_side: int = 640,
    margin: float = 0.1,
    language: dict | None = None,
    threads: int = 1,
    limits: Limits | None = None,
    **_ignored,
) -> dict:
    logger = job_logger("ocr")
    limits = limits or Limits()
    root = Path(images_root)
    language = language or {}
    to_ocr = {r["image_id"] for r in read_jsonl(gate, "gate") if r["decision"] == "ocr"}
    images = [im for im in distinct_images(ingest) if im.image_id in to_ocr]
    summary = JobSummary(shard=shard, stage="ocr", images=len(images))
    if not images:  # nothing gated in: no model to load
        summary.records = write_jsonl(output, "ocr", [])
        return summary.finish()
    sizing = {"min_side": min_side, "margin": margin} if engine == "rapidocr" else {}
    ocr = make_ocr_engine(engine, text_score=text_score, box_thresh=box_thresh, use_cls=use_cls, max_side=max_side, threads=threads, **sizing)
    guesser = LanguageGuesser(
        languages=language.get("languages", DEFAULT_LANGUAGES),
        min_confidence=language.get("min_confidence", 0.3),
        min_letters=language.get("min_letters", 4),
        low_accuracy=language.get("low_accuracy", False),
    )
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
