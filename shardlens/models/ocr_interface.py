"""What every OCR engine is: the :class:`OCREngine` protocol and the :class:`OCRLine` it returns.

The engines (RapidOCR in :mod:`shardlens.models.rapid_ocr`, PaddleOCR in
:mod:`shardlens.models.paddle_ocr` and :mod:`shardlens.models.paddle_bridge`) import this module
only; the registry (:mod:`shardlens.models.ocr_engines`) imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


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
