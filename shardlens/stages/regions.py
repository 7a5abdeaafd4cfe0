"""Regions stage: the detector's native regions of a shard with the ontology applied.

Reads ``cache/detect/{shard}.jsonl`` (what the detector said) and writes
``cache/regions/{shard}.jsonl`` (the labels the rest of the workflow reads: embeddings, clusters,
catalog, exports). Cheap (no image is read, no detector runs), so editing the ontology re-runs this
and what follows, never detection (docs/adr/0009-ontology.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..jobs import JobSummary, job_logger
from ..ontology import DROP_REASONS, Ontology, apply_ontology, vocabulary_ontology
from ..options import RegionsOptions
from ..records import read_jsonl, write_jsonl


def shard_ontology(options: RegionsOptions, detections: list[dict], threads: int) -> Ontology | None:
    """The ontology of the regions options: the file's, or the one ``detect.vocabulary`` stands
    for over the detector names in this shard, or None (the detector's names kept)."""
    if options.ontology is not None:
        return Ontology.from_dict(options.ontology, source="ontology")
    vocabulary = options.vocabulary
    if vocabulary is None:
        return None
    from ..models.text_embedder import OnnxTextEmbedder

    names = {candidate["label"] for region in detections for candidate in region["labels"]}
    embed = OnnxTextEmbedder(threads).encode if names else None  # the vocabulary map embeds with onnx, whatever embed.backend
    return vocabulary_ontology(names, list(vocabulary.terms), embed, vocabulary.threshold)


def run_shard(detect: str | Path, output: str | Path, shard: str, options: Mapping[str, Any], threads: int) -> dict:
    """:func:`run` with the options of the rule's params (what
    :func:`shardlens.ontology.regions_options` derives; an unknown key is an error)."""
    return run(detect, output, shard, RegionsOptions.from_values(options), threads)


def run(detect: str | Path, output: str | Path, shard: str, options: RegionsOptions, threads: int) -> dict:
    logger = job_logger("regions")
    detections = list(read_jsonl(detect, "detection"))
    summary = JobSummary(shard=shard, stage="regions", images=len({r["image_id"] for r in detections}))
    ontology = shard_ontology(options, detections, threads=threads)
    if ontology is not None and options.vocabulary is not None:
        logger.info("vocabulary map: %s", {n: c.name for c in ontology.classes for n in c.native})
    regions, dropped = [], Counter()
    for detection in detections:
        region, reason = apply_ontology(detection, ontology)
        if region is None:
            dropped[reason] += 1
        else:
            regions.append(region)
    summary.ok = summary.images
    summary.records = write_jsonl(output, "region", regions)
    summary.extra = {"detections": len(detections), "regions": len(regions), **{f"dropped_{r}": dropped[r] for r in DROP_REASONS}}
    return summary.finish()
