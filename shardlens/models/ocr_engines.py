"""The OCR engines by name (``ocr.engine``): RapidOCR (:mod:`shardlens.models.rapid_ocr`, the
default) and PaddleOCR (:mod:`shardlens.models.paddle_ocr`, or through
:mod:`shardlens.models.paddle_bridge` from the main venv). The protocol they share is in
:mod:`shardlens.models.ocr_interface`.
"""

from __future__ import annotations

from pathlib import Path

from ..options import OCROptions
from .ocr_interface import OCREngine
from .rapid_ocr import RAPIDOCR_MODEL_FILES, RapidOCREngine
from .weights import rapidocr_model


def _paddleocr_engine(options: OCROptions, threads: int) -> OCREngine:
    """In-process where paddleocr imports (its conda env or the paddle venv), else a worker
    process in the paddle venv (PaddlePaddle needs another OpenCV build than rapidocr)."""
    import importlib.util

    if importlib.util.find_spec("paddleocr") is not None:
        from .paddle_ocr import PaddleOCREngine

        return PaddleOCREngine(options, threads, models_dir=None)
    from .paddle_bridge import PaddleBridgeEngine

    return PaddleBridgeEngine(options, threads, models_dir=None)


OCR_ENGINES = {"rapidocr": RapidOCREngine, "paddleocr": _paddleocr_engine}


def make_ocr_engine(options: OCROptions, threads: int) -> OCREngine:
    """The engine ``options.engine`` names, with ``options``."""
    try:
        factory = OCR_ENGINES[options.engine]
    except KeyError:
        raise ValueError(f"unknown OCR engine {options.engine!r}; available: {', '.join(sorted(OCR_ENGINES))}") from None
    return factory(options, threads)


def ocr_weight_files(engine: str) -> dict[str, Path]:
    """Weight files of an engine without loading it (for Snakemake params and the manifest)."""
    if engine == "rapidocr":
        return {role: rapidocr_model(name) for role, name in RAPIDOCR_MODEL_FILES.items()}
    if engine == "paddleocr":
        from .paddle_models import paddle_weight_files

        return paddle_weight_files()
    raise ValueError(f"unknown OCR engine {engine!r}; available: {', '.join(sorted(OCR_ENGINES))}")
