"""Adapter for phase-1 caches (shardlens 0.x: ingest and OCR of every image, no gate, no detection).

The phase-1 layout, as those releases wrote it::

    cache/manifest.json
        {"phase": 1, "version": "0.4.2", "generated_at": "2026-06-01T12:00:00+00:00",
         "schema_hash": PHASE1_SCHEMA_HASH, "dataset_digest": "<sha256>",
         "files": {"<shard>": {"ingest": {"path": "ingest/<shard>.jsonl", "sha256": "...", "lines": 12},
                               "ocr":    {"path": "ocr/<shard>.jsonl",    "sha256": "...", "lines": 30}}}}

    cache/ingest/<shard>.jsonl, one line per listed file (no schema_version):
        {"sha256": "<hex>" | null, "file": "a/b.jpg", "size": 1234 | null,
         "w": 640 | null, "h": 480 | null, "fmt": "jpeg" | null,
         "ok": true | false, "reason": null | "<phase-1 reason>", "message": null | "..."}
        (w, h already EXIF-oriented; fmt in lower case; reasons: missing, empty, unreadable,
        too_big, bomb, not_image, truncated, decode_error)

    cache/ocr/<shard>.jsonl, one line per text line (PaddleOCR, every ingested image):
        {"sha256": "<hex>", "idx": 0, "text": "EXIT", "score": 0.97,
         "box": [[x, y], [x, y], [x, y], [x, y]], "lang": "en" | null}

What the upgrade does: field renames (sha256 -> image_id, file -> path, size -> bytes, w/h ->
width/height, idx -> line_no, score -> confidence, lang -> language), ``ok``/``reason`` become
``status``/``error`` with the current reason codes (an unknown reason becomes ``io_error`` and
keeps its name in ``error_detail``: nothing is dropped), the four-point ``box`` becomes its
axis-aligned hull ``bbox``, the format is upper-cased as Pillow names it, and
``schema_version`` is added. Phase 1 recorded no language confidence, so ``language_confidence``
is null, and, as the current contract requires, no language is kept for lines with fewer than
four letters. There are no gate, detection or embedding records: those tables stay empty for
phase-1 shards until the workflow re-runs them.
"""

from __future__ import annotations

from ..records import SCHEMA_VERSION
from .base import CacheAdapter

# The schema_hash phase-1 manifests carry (shardlens 0.4's hash over its two contracts).
PHASE1_SCHEMA_HASH = "5f1e0d3c9a7b2e4f6a8c0b1d3e5f7a9c2b4d6e8f0a1c3e5b7d9f1a3c5e7b9d0f"

REASONS = {
    "missing": "not_found",
    "empty": "empty_file",
    "unreadable": "permission_denied",
    "too_big": "too_large_bytes",
    "bomb": "too_many_pixels",
    "not_image": "not_an_image",
    "truncated": "truncated",
    "decode_error": "corrupt",
}
MIN_LETTERS = 4
SOURCE = "paddleocr (phase-1 cache)"


class Phase1Adapter(CacheAdapter):
    name = "phase1"
    schema_hash = PHASE1_SCHEMA_HASH
    description = "phase-1 cache (shardlens 0.x: ingest + OCR, no gate or detection)"

    def upgrade_manifest(self, manifest: dict) -> dict:
        if manifest.get("phase") != 1 or "files" not in manifest:
            raise ValueError("not a phase-1 manifest (expected phase 1 and a 'files' map)")
        shards = {
            shard: {stage: {"file": f["path"], "sha256": f["sha256"], "records": f["lines"]} for stage, f in stages.items()}
            for shard, stages in manifest["files"].items()
        }
        stages = sorted({stage for entry in shards.values() for stage in entry})
        return {
            "phase": 1,
            "version": manifest.get("version", "0"),
            "generated_at": manifest["generated_at"],
            "schema_hash": manifest["schema_hash"],
            "dataset_digest": manifest["dataset_digest"],
            "models": manifest.get("models", {}),
            "stages": stages,
            "shards": shards,
            "aggregates": {},
        }

    def upgrade(self, kind: str, record: dict) -> dict | None:
        if kind == "ingest":
            return self._ingest(record)
        if kind == "ocr":
            return self._ocr(record)
        raise ValueError(f"phase-1 caches have no {kind!r} records")

    @staticmethod
    def _ingest(old: dict) -> dict:
        ok = bool(old["ok"])
        error = detail = None
        if not ok:
            reason = old.get("reason")
            error = REASONS.get(reason, "io_error")
            detail = old.get("message") or reason or "phase 1 gave no reason"
            if reason not in REASONS:
                detail = f"phase-1 reason {reason!r}: {detail}"
        fmt = old.get("fmt")
        return {
            "schema_version": SCHEMA_VERSION,
            "image_id": old.get("sha256"),
            "path": old["file"],
            "bytes": old.get("size"),
            "width": old.get("w") if ok else None,
            "height": old.get("h") if ok else None,
            "format": fmt.upper() if isinstance(fmt, str) else None,
            "phash": None,  # phase 1 computed none: these images are in no near-duplicate group
            "status": "ok" if ok else "error",
            "error": error,
            "error_detail": detail,
        }

    @staticmethod
    def _ocr(old: dict) -> dict:
        xs = [float(p[0]) for p in old["box"]]
        ys = [float(p[1]) for p in old["box"]]
        text = old["text"]
        language = old.get("lang")
        if sum(ch.isalpha() for ch in text) < MIN_LETTERS:
            language = None
        return {
            "schema_version": SCHEMA_VERSION,
            "image_id": old["sha256"],
            "line_no": int(old["idx"]),
            "region_id": None,
            "text": text,
            "confidence": float(old["score"]),
            "language": language,
            "language_confidence": None,
            "bbox": [min(xs), min(ys), max(xs), max(ys)],
            "source": SOURCE,
        }
