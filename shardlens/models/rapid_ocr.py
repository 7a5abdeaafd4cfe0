"""RapidOCR 3.x on onnxruntime with the PP-OCRv6 small det/rec models its wheel carries: the
default OCR engine (``ocr.engine: rapidocr``)."""

from __future__ import annotations

import logging
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

from ..images.decoding import add_margin
from ..options import OCROptions
from .ocr_interface import OCRLine
from .weights import rapidocr_model, sha256_file

RAPIDOCR_MODEL_FILES = {
    "det": "PP-OCRv6_det_small.onnx",
    "cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "rec": "PP-OCRv6_rec_small.onnx",
}


class RapidOCREngine:
    """The :class:`~shardlens.models.ocr_interface.OCREngine` protocol on RapidOCR, with the
    ``ocr`` options (all but ``engine`` and ``language``).

    ``use_det``/``use_cls``/``use_rec`` are passed on every call: RapidOCR keeps them between
    calls otherwise.
    """

    name = "rapidocr"

    def __init__(self, options: OCROptions, threads: int):
        from rapidocr import RapidOCR

        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.use_cls = options.use_cls
        self.box_thresh = options.box_thresh
        self.text_score = options.text_score
        self.margin = options.margin
        min_side, max_side = options.min_side, options.max_side
        self._engine = RapidOCR(
            params={
                "Global.log_level": "error",
                "Global.text_score": options.text_score,
                "Global.max_side_len": max_side,
                "Det.box_thresh": options.box_thresh,
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
