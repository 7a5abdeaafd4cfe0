"""OCR engines behind one interface. RapidOCR (PP-OCRv6 ONNX models from its wheel) is the
default; other backends (PaddleOCR) plug in through :func:`make_ocr_engine`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Protocol

import numpy as np

from ..images.decoding import add_margin
from .weights import rapidocr_model, sha256_file


@dataclass(frozen=True, slots=True)
class OCRLine:
    text: str
    confidence: float
    bbox: tuple[float, float, float, float]  # axis-aligned hull of the text polygon


class OCREngine(Protocol):
    name: str
    source: str  # engine and model version, written into every OCR record

    @property
    def weight_files(self) -> list[Path]: ...

    def warmup(self) -> None: ...

    def recognize(self, image_rgb: np.ndarray) -> list[OCRLine]: ...


RAPIDOCR_MODEL_FILES = {
    "det": "PP-OCRv6_det_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
}


class RapidOCREngine:
    """RapidOCR 3.x on onnxruntime with the PP-OCRv6 small det/rec models its wheel carries.

    ``use_det``/``use_cls``/``use_rec`` are passed on every call: RapidOCR keeps them between
    calls otherwise.
    """

    name = "rapidocr"

    def __init__(
        self,
        text_score: float = 0.5,
        box_thresh: float = 0.6,
        use_cls: bool = True,
        max_side: int = 2000,
        threads: int = 1,
        min_side: int = 640,
        margin: float = 0.1,
    ):
        from rapidocr import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.use_cls = use_cls
        self.box_thresh = box_thresh
        self.text_score = text_score
        self.margin = margin
        self._engine = RapidOCR(
            params={
                "Global.log_level": "error",
                "Global.text_score": text_score,
                "Global.max_side_len": max_side,
                "Det.box_thresh": box_thresh,
                # min_side > 0: RapidOCR's own rule (limit_type min) enlarges an image whose
                # shorter side is under min_side before detection; 0 detects at the image's
                # size, capped at max_side.
                "Det.limit_type": "min" if min_side > 0 else "max",
                "Det.limit_side_len": min_side if min_side > 0 else max_side,
                "EngineConfig.onnxruntime.intra_op_num_threads": max(1, threads),
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )
        rec = rapidocr_model(RAPIDOCR_MODEL_FILES["rec"])
        self.source = f"rapidocr-{package_version('rapidocr')}:{rec.stem}@{sha256_file(rec)[:12]}"

    @property
    def weight_files(self) -> list[Path]:
        return [rapidocr_model(f) for f in RAPIDOCR_MODEL_FILES.values()]

    def warmup(self) -> None:
        canvas = np.full((64, 256, 3), 255, dtype=np.uint8)
        canvas[24:40, 20:236] = 0
        self.recognize(canvas)

    def recognize(self, image_rgb: np.ndarray) -> list[OCRLine]:
        pad = int(round(self.margin * min(image_rgb.shape[:2]))) if self.margin > 0 else 0
        if pad:  # a border in the edge colour: text touching the frame is found
            image_rgb = add_margin(image_rgb, pad)
        bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
        result = self._engine(
            bgr,
            use_det=True,
            use_cls=self.use_cls,
            use_rec=True,
            text_score=self.text_score,
            box_thresh=self.box_thresh,
        )
        boxes = getattr(result, "boxes", None)
        texts = getattr(result, "txts", None)
        scores = getattr(result, "scores", None)
        if boxes is None or texts is None:
            return []
        lines = []
        for polygon, text, score in zip(boxes, texts, scores):
            text = text.strip()
            if not text:
                continue
            pts = np.asarray(polygon, dtype=np.float64) - pad
            h, w = image_rgb.shape[0] - 2 * pad, image_rgb.shape[1] - 2 * pad
            bbox = (
                float(np.clip(pts[:, 0].min(), 0, w)), float(np.clip(pts[:, 1].min(), 0, h)),
                float(np.clip(pts[:, 0].max(), 0, w)), float(np.clip(pts[:, 1].max(), 0, h)),
            )  # fmt: skip
            lines.append(OCRLine(text=text, confidence=float(min(1.0, max(0.0, score))), bbox=bbox))
        return lines


def _paddleocr_engine(**options) -> OCREngine:
    """In-process where paddleocr imports (its conda env or the paddle venv), else a worker
    process in the paddle venv (PaddlePaddle needs another OpenCV build than rapidocr)."""
    import importlib.util

    if importlib.util.find_spec("paddleocr") is not None:
        from .paddle_ocr import PaddleOCREngine

        return PaddleOCREngine(**options)
    from .paddle_bridge import PaddleBridgeEngine

    return PaddleBridgeEngine(**options)


OCR_ENGINES = {"rapidocr": RapidOCREngine, "paddleocr": _paddleocr_engine}


def make_ocr_engine(engine: str, **options) -> OCREngine:
    try:
        factory = OCR_ENGINES[engine]
    except KeyError:
        raise ValueError(f"unknown OCR engine {engine!r}; available: {', '.join(sorted(OCR_ENGINES))}") from None
    return factory(**options)


def ocr_weight_files(engine: str) -> dict[str, Path]:
    """Weight files of an engine without loading it (for Snakemake params and the manifest)."""
    if engine == "rapidocr":
        return {role: rapidocr_model(name) for role, name in RAPIDOCR_MODEL_FILES.items()}
    if engine == "paddleocr":
        from .paddle_models import paddle_weight_files

        return paddle_weight_files()
    raise ValueError(f"unknown OCR engine {engine!r}; available: {', '.join(sorted(OCR_ENGINES))}")
