"""Text gate stage: decide per distinct image whether OCR should run."""

from __future__ import annotations

from pathlib import Path

from ..images.decoding import Limits
from ..jobs import JobSummary, Progress, batched, job_logger, prefetch
from ..models.text_gate import GateScore, TextGate
from ..options import GateOptions
from ..records import SCHEMA_VERSION, write_jsonl
from .inputs import ShardImage, distinct_images, load_rgb


def decide(result: GateScore, score_threshold: float) -> tuple[str, str | None]:
    """(decision, skip_reason) for one image's gate score."""
    if result.regions == 0:
        return "skip", "no_text_regions"
    if result.score < score_threshold:
        return "skip", "below_threshold"
    return "ocr", None


def run_shard(ingest: str | Path, images_root: str | Path, output: str | Path, shard: str, threads: int, limits: Limits, **options) -> dict:
    """The gate rule's entry, called as scripts/gate.py calls it (see shardlens/options.py):
    ``options`` are the rule's ``gate`` config values; an unknown one is an error."""
    return run(ingest, images_root, output, shard, GateOptions.from_values(options), threads, limits)


def run(ingest: str | Path, images_root: str | Path, output: str | Path, shard: str, options: GateOptions, threads: int, limits: Limits) -> dict:
    """Write ``cache/gate/{shard}.jsonl``: a decision for every distinct image of the shard."""
    logger = job_logger("gate")
    root = Path(images_root)
    images = distinct_images(ingest)
    summary = JobSummary(shard=shard, stage="gate", images=len(images))
    gate = TextGate(options, threads)
    progress = Progress(logger, f"gate {shard}", len(images))
    records: dict[str, dict] = {}

    def record(image: ShardImage, has_text: bool, score: float, regions: int, decision: str, reason: str | None) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "image_id": image.image_id,
            "has_text": has_text,
            "score": round(float(score), 6),
            "decision": decision,
            "skip_reason": reason,
            "text_regions": regions,
            "gate_version": gate.version,
        }

    decodable = []
    for image in images:
        if not image.ok:
            records[image.image_id] = record(image, False, 0.0, 0, "skip", "ingest_error")
            summary.skipped += 1
            progress.step()
        else:
            decodable.append(image)

    for batch in batched(prefetch(decodable, lambda im: load_rgb(root, im, limits, options.max_side), depth=options.batch_size * 2), options.batch_size):
        good = [(im, arr) for im, arr in batch if not isinstance(arr, BaseException)]
        for im, arr in batch:
            if isinstance(arr, BaseException):  # decoded at ingest, unreadable now: changed under us
                logger.warning("%s: cannot decode any more (%s); skipped", im.path, arr)
                records[im.image_id] = record(im, False, 0.0, 0, "skip", "ingest_error")
                summary.errors += 1
        scores = gate.score_batch([arr for _, arr in good])
        for (im, _), result in zip(good, scores):
            decision, reason = decide(result, options.score_threshold)
            records[im.image_id] = record(im, result.regions > 0, result.score, result.regions, decision, reason)
            if decision == "ocr":
                summary.ok += 1
            else:
                summary.skipped += 1
        progress.step(len(batch))

    ordered = [records[im.image_id] for im in images]
    summary.records = write_jsonl(output, "gate", ordered)
    return summary.finish()
