"""Text gate: the PP-OCRv6 small text-detection model (shipped in the rapidocr wheel) run
directly on onnxruntime at a small size, to decide whether an image is worth full OCR.

The model outputs a per-pixel text probability map (DB, "Differentiable Binarization"). A text
region is a connected blob of pixels above ``pixel_threshold``; its score is the mean probability
inside it. The gate's score for an image is its best region score.

Text regions are strokes of lines: thin across the line. On flat, textured or out-of-distribution
content (plain colours, foliage, gravel, large smooth objects) the model paints one big blob in the
middle of the image instead; a region thicker than ``max_thickness`` of the image's shorter side
(measured across its minimum-area rectangle) is such a blob and is ignored, unless it is at least
``min_aspect`` times longer than thick: a cropped word or a tight banner fills the frame and is
thick, but it is long. Such text touches the frame, so a ``margin`` in the image's edge colour is
added first; small images are enlarged (``upscale``) so small text reaches the detector's scale.
The defaults (config/schema.yaml) were fitted on the ``fit`` half of the real-image quality set (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..images.decoding import add_margin
from ..options import GateOptions
from .onnx_session import onnx_session
from .weights import rapidocr_model, short_version

GATE_MODEL_FILE = "PP-OCRv6_det_small.onnx"


@dataclass(frozen=True, slots=True)
class GateScore:
    score: float  # best region score, 0 when there is no region
    regions: int  # regions with score >= box_threshold


class TextGate:
    """Batched text-presence scoring with the PP-OCR detection model, with the ``gate`` options
    (``score_threshold`` and ``batch_size`` are the stage's)."""

    backend = "ppocr-det-onnx"

    def __init__(self, options: GateOptions, threads: int):
        self.model_path = rapidocr_model(GATE_MODEL_FILE)
        self.max_side = options.max_side
        self.pixel_threshold = options.pixel_threshold
        self.box_threshold = options.box_threshold
        self.min_region_pixels = options.min_region_pixels
        self.max_thickness = options.max_thickness
        self.upscale = options.upscale
        self.margin = options.margin
        self.min_aspect = options.min_aspect
        self.session = onnx_session(self.model_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.version = short_version(self.backend, self.model_path)

    @property
    def weight_files(self) -> list[Path]:
        return [self.model_path]

    def _prepare(self, image_rgb: np.ndarray) -> np.ndarray:
        """Resize to fit max_side with both sides multiples of 32; normalise like PaddleOCR (BGR)."""
        h, w = image_rgb.shape[:2]
        if self.margin > 0:
            image_rgb = add_margin(image_rgb, int(round(self.margin * min(h, w))))
            h, w = image_rgb.shape[:2]
        scale = min(self.upscale, self.max_side / max(h, w))
        nh = max(32, int(round(h * scale / 32)) * 32)
        nw = max(32, int(round(w * scale / 32)) * 32)
        resized = cv2.resize(image_rgb, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        bgr = resized[:, :, ::-1].astype(np.float32)
        return ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)

    def score_batch(self, images_rgb: list[np.ndarray]) -> list[GateScore]:
        """Score a batch of RGB images. An image's score never depends on its neighbours: images
        run together only when their prepared tensors have the same size (no padding), and the
        model sees each one exactly as it would alone."""
        if not images_rgb:
            return []
        tensors = [self._prepare(img) for img in images_rgb]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tensors):
            by_shape.setdefault(t.shape, []).append(i)
        results: list[GateScore | None] = [None] * len(tensors)
        for indices in by_shape.values():
            batch = np.stack([tensors[i] for i in indices])
            probs = self.session.run(None, {self.input_name: batch})[0][:, 0]
            for k, i in enumerate(indices):
                results[i] = self._score_map(probs[k])
        return results  # type: ignore[return-value]

    def _score_map(self, prob: np.ndarray) -> GateScore:
        bitmap = (prob > self.pixel_threshold).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(bitmap, connectivity=8)
        max_thickness_px = self.max_thickness * min(prob.shape)
        best = 0.0
        regions = 0
        for label in range(1, n):
            if stats[label, cv2.CC_STAT_AREA] < self.min_region_pixels:
                continue
            # only the region's bounding box: comparing the whole map per region made scoring
            # quadratic in the number of regions (most of the gate's time on busy images)
            x, y = stats[label, cv2.CC_STAT_LEFT], stats[label, cv2.CC_STAT_TOP]
            box = np.s_[y : y + stats[label, cv2.CC_STAT_HEIGHT], x : x + stats[label, cv2.CC_STAT_WIDTH]]
            mask = labels[box] == label
            score = float(prob[box][mask].mean())
            if score < self.box_threshold:
                continue
            ys, xs = np.nonzero(mask)
            (_, _), (w, h), _ = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
            if min(w, h) > max_thickness_px and max(w, h) < self.min_aspect * min(w, h):
                continue  # a thick, compact blob, not a line of text (a frame-filling word is long)
            best = max(best, score)
            regions += 1
        return GateScore(score=min(1.0, best), regions=regions)
