"""Embed stage: every distinct text of a shard (captions, labels, OCR lines) embedded once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..jobs import JobSummary, job_logger
from ..options import EmbedOptions
from ..records import SCHEMA_VERSION, read_jsonl, write_jsonl
from ..vectors import encode_vector


def collect_texts(regions: str | Path, ocr: str | Path, min_ocr_chars: int) -> dict[tuple[str, str], list[list]]:
    """(kind, text) -> occurrences [image_id, region_id, line_no], in file order. ``regions``
    is the regions stage's file: the labels after the ontology."""
    texts: dict[tuple[str, str], list[list]] = {}
    for region in read_jsonl(regions, "region"):
        where = [region["image_id"], region["region_id"], None]
        texts.setdefault(("caption", region["caption"]), []).append(where)
        for candidate in region["labels"][1:]:
            texts.setdefault(("label", candidate["label"]), []).append(where)
    for line in read_jsonl(ocr, "ocr"):
        text = " ".join(line["text"].split())
        if len(text) >= min_ocr_chars:
            texts.setdefault(("ocr", text), []).append([line["image_id"], None, line["line_no"]])
    return texts


def run_shard(regions: str | Path, ocr: str | Path, output: str | Path, shard: str, options: Mapping[str, Any], threads: int) -> dict:
    """The embed rule's entry, called as scripts/embed.py calls it (see shardlens/options.py):
    ``options`` are the rule's ``embed`` config values; an unknown one is an error."""
    return run(regions, ocr, output, shard, EmbedOptions.from_values(options), threads)


def run(regions: str | Path, ocr: str | Path, output: str | Path, shard: str, options: EmbedOptions, threads: int) -> dict:
    """Write ``cache/embed/{shard}.jsonl``: every distinct text of the shard with its vector."""
    logger = job_logger("embed")
    texts = collect_texts(regions, ocr, options.min_ocr_chars)
    occurrences = sum(len(v) for v in texts.values())
    summary = JobSummary(shard=shard, stage="embed", images=len({o[0] for occ in texts.values() for o in occ}))
    records = []
    if texts:
        from ..models.text_embedder import make_text_embedder

        embedder = make_text_embedder(options, threads)
        keys = sorted(texts)  # stable order: same input, same file
        vectors = embedder.encode([text for _, text in keys])
        for (kind, text), vector in zip(keys, vectors):
            records.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "kind": kind,
                    "text": text,
                    "occurrences": texts[(kind, text)],
                    "model": embedder.name,
                    "dim": embedder.dim,
                    "vector": encode_vector(vector),
                }
            )
        logger.info("embed %s: %d distinct texts for %d occurrences", shard, len(keys), occurrences)
    summary.ok = summary.images
    summary.records = write_jsonl(output, "embedding", records)
    summary.extra = {"distinct_texts": len(records), "occurrences": occurrences}
    return summary.finish()
