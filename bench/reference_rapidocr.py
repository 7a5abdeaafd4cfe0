"""Raw RapidOCR 3.10.0 with its own defaults, as a reference for the workflow's OCR.

No shardlens code: ``RapidOCR()`` with the package's bundled config (PP-OCRv6 det/rec small,
text_score 0.5, images resized within [30, 2000] px), called on the file path (RapidOCR applies
the EXIF orientation itself). ``use_det``, ``use_cls`` and ``use_rec`` are passed on every call,
since RapidOCR keeps a call's switches for the next one.

    python bench/reference_rapidocr.py IMAGE...   # prints one JSON line per image
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path


class ReferenceRapidOCR:
    """``read(path)`` -> ``[{"text", "bbox": [x0, y0, x1, y1], "polygon", "score"}]`` in RapidOCR's order."""

    def __init__(self) -> None:
        from rapidocr import RapidOCR

        self.engine = RapidOCR()
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)  # not "The text detection result is empty" per image

    def read(self, path: str | Path) -> list[dict]:
        result = self.engine(str(path), use_det=True, use_cls=True, use_rec=True)
        boxes, texts, scores = getattr(result, "boxes", None), getattr(result, "txts", None), getattr(result, "scores", None)
        if boxes is None or texts is None:
            return []
        lines = []
        for polygon, text, score in zip(boxes, texts, scores):
            xs = [float(p[0]) for p in polygon]
            ys = [float(p[1]) for p in polygon]
            lines.append(
                {
                    "text": str(text),
                    "bbox": [round(min(xs), 1), round(min(ys), 1), round(max(xs), 1), round(max(ys), 1)],
                    "polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in polygon],
                    "score": round(float(score), 5),
                }
            )
        return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()
    engine = ReferenceRapidOCR()
    for path in args.images:
        t0 = time.perf_counter()
        lines = engine.read(path)
        print(json.dumps({"file": str(path), "ms": round((time.perf_counter() - t0) * 1000, 1), "lines": lines}, ensure_ascii=False))


if __name__ == "__main__":
    main()
