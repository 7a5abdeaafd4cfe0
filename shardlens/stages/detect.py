"""Detect stage: regions with the detector's own label candidates for every distinct image of a shard.

The records keep the detector's names (its native classes, or the prompts an open-vocabulary
detector or the crop classifier matched); the regions stage maps them onto the ontology
(shardlens/stages/regions.py), so editing the ontology re-runs no detector."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..images.decoding import Limits
from ..jobs import JobSummary, Progress, batched, job_logger, prefetch
from ..models.detectors import detector_weight_files, make_classifier, make_detector
from ..models.weights import sha256_file
from ..options import DetectOptions
from ..records import SCHEMA_VERSION, write_jsonl
from .inputs import distinct_images, load_rgb


def detector_version(options: dict) -> str:
    """backend:model@sha12 over the detector's (and classifier's) weight files."""
    import hashlib

    digest = hashlib.sha256()
    for name, path in sorted(detector_weight_files(options).items()):
        digest.update(f"{name}={sha256_file(path)}".encode())
    model = Path(options["model"]).name if options.get("model") else "nanodet-g-416"
    version = f"{options['backend']}:{model}@{digest.hexdigest()[:12]}"
    classifier = options.get("classifier") or {}
    if classifier.get("backend"):
        version += f"+{classifier['backend']}:{Path(classifier['model']).name}"
    return version


def merge_candidates(detector: list[tuple[str, float]], classifier: list[tuple[str, float]], top_k: int) -> list[dict]:
    """Label candidates of one region: each label once, with its best score.

    The detector's first candidate is the class the region was detected as (the box NMS kept for
    that class); without a crop classifier it stays first, so a region never takes the label of
    another box of the same cell. With a classifier, every candidate ranks by score."""
    best: dict[str, dict] = {}
    for source, candidates in (("detector", detector), ("classifier", classifier)):
        for label, score in candidates:
            score = float(min(1.0, max(0.0, score)))
            if label not in best or score > best[label]["score"]:
                best[label] = {"label": label, "score": round(score, 6), "source": source}
    ranked = sorted(best.values(), key=lambda c: (-c["score"], c["label"]))
    if detector and not classifier:
        own = best[detector[0][0]]
        ranked = [own] + [c for c in ranked if c is not own]
    return ranked[:top_k]


def region_records(
    image_id: str,
    detections: list[dict],
    classifier_labels: list[list[tuple[str, float]]],
    top_k: int,
    version: str,
    scale: tuple[float, float],
    size: tuple[int, int],
) -> list[dict]:
    sx, sy = scale
    width, height = size
    records = []
    ordered = sorted(range(len(detections)), key=lambda i: (-detections[i]["score"], i))
    for region_id, i in enumerate(ordered):
        det = detections[i]
        x0, y0, x1, y1 = det["bbox"]
        bbox = [
            round(min(max(x0 * sx, 0.0), width), 2),
            round(min(max(y0 * sy, 0.0), height), 2),
            round(min(max(x1 * sx, 0.0), width), 2),
            round(min(max(y1 * sy, 0.0), height), 2),
        ]
        raw = det.get("candidates") or [(det["label"], det["score"])]
        labels = merge_candidates(list(raw), classifier_labels[i] if classifier_labels else [], top_k)
        records.append(
            {
                "schema_version": SCHEMA_VERSION,
                "image_id": image_id,
                "region_id": region_id,
                "bbox": bbox,
                "score": round(float(det["score"]), 6),
                "labels": labels,
                "caption": labels[0]["label"],
                "detector_label": det["label"],
                "detector_version": version,
            }
        )
    return records


def run_shard(ingest: str | Path, images_root: str | Path, output: str | Path, shard: str, options: Mapping[str, Any], threads: int, limits: Limits) -> dict:
    """The detect rule's entry, called as scripts/detect.py calls it (see shardlens/options.py):
    ``options`` are the rule's detect options (:func:`shardlens.ontology.detector_options`)."""
    return run(ingest, images_root, output, shard, DetectOptions.from_values(options), threads, limits)


def run(ingest: str | Path, images_root: str | Path, output: str | Path, shard: str, options: DetectOptions, threads: int, limits: Limits) -> dict:
    """Write ``cache/detect/{shard}.jsonl``: the regions of every decodable distinct image."""
    logger = job_logger("detect")
    root = Path(images_root)
    images = [im for im in distinct_images(ingest) if im.ok]
    summary = JobSummary(shard=shard, stage="detect", images=len(images))
    if not images:
        summary.records = write_jsonl(output, "detection", [])
        return summary.finish()
    detector = make_detector(options, threads)
    classifier = make_classifier(options, threads)
    version = detector_version(options.to_dict())
    progress = Progress(logger, f"detect {shard}", len(images))
    records: list[dict] = []
    with_regions = 0
    loaded = prefetch(images, lambda im: load_rgb(root, im, limits, options.decode_max_side), depth=options.batch_size * 2)
    for batch in batched(loaded, options.batch_size):
        good = []
        for image, rgb in batch:
            if isinstance(rgb, BaseException):
                logger.warning("%s: cannot decode any more (%s); skipped", image.path, rgb)
                summary.errors += 1
            else:
                good.append((image, rgb))
        results = detector.detect_batch([rgb for _, rgb in good])
        if classifier is not None:  # the crops of the whole batch through the classifier together
            boxes = [[d["bbox"] for d in detections] for detections in results]
            classified = classifier.classify_batch([rgb for _, rgb in good], boxes, top_k=options.top_k)
        else:
            classified = [[] for _ in results]
        for (image, rgb), detections, per_box in zip(good, results, classified):
            scale = (image.width / rgb.shape[1], image.height / rgb.shape[0])
            regions = region_records(image.image_id, detections, per_box, options.top_k, version, scale, (image.width, image.height))
            records.extend(regions)
            summary.ok += 1
            with_regions += bool(regions)
        progress.step(len(batch))
    summary.records = write_jsonl(output, "detection", records)
    summary.extra = {"images_with_regions": with_regions, "images_without_regions": summary.ok - with_regions, "regions": len(records)}
    return summary.finish()
