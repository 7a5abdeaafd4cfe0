"""Rows the catalog derives from the records as it loads a shard, beyond copying them: the OCR
lines linked to the detection regions holding them (the OCR stage does not depend on the
detector, so its records leave ``region_id`` null; ``contracts/ocr.schema.json``). The label
candidates and the risk signals of a shard are derived alongside (:mod:`shardlens.catalog.load`,
:mod:`shardlens.risk`)."""

from __future__ import annotations

# Bump when rows are derived differently from the same records (e.g. how OCR lines link to
# regions): a catalog written by another derivation is then rebuilt, like one of another layout.
CATALOG_DERIVATION = 1


def link_lines_to_regions(lines: list[dict], regions: list[dict]) -> None:
    """Set each OCR line's region_id to the smallest detection region holding the line's centre."""
    by_image: dict[str, list[dict]] = {}
    for region in regions:
        by_image.setdefault(region["image_id"], []).append(region)
    for line in lines:
        x0, y0, x1, y1 = line["bbox"]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        holding = [r for r in by_image.get(line["image_id"], []) if r["bbox"][0] <= cx <= r["bbox"][2] and r["bbox"][1] <= cy <= r["bbox"][3]]
        if holding:
            best = min(holding, key=lambda r: ((r["bbox"][2] - r["bbox"][0]) * (r["bbox"][3] - r["bbox"][1]), r["region_id"]))
            line["region_id"] = best["region_id"]
