"""Raw NanoDet-g, written from the model's description alone, as a reference for the workflow.

Independent of ``shardlens.models.nanodet`` on purpose (written without reading it), so that the
quality bench compares the wrapper with the engine and not with itself. What it follows:

* the ONNX file's own outputs: ``cls_s{8,16,32}`` (N, H*W, 80) class probabilities (sigmoid
  applied), ``reg_s{8,16,32}`` (N, H*W, 44) logits of the GFL head's distance distributions;
* the head (``shardlens/models/weights/nanodet-g/SOURCE.md``): 4 sides (left, top, right, bottom)
  x 11 bins (reg_max = 10), each side's distance = softmax-expected bin x stride, measured from the
  cell centre ((col + 0.5) x stride, (row + 0.5) x stride), cells row-major;
* preprocessing: EXIF orientation applied, RGB -> BGR, stretched to 416 x 416 (bilinear),
  ``(pixel - mean) / std`` with mean (103.53, 116.28, 123.675), std (57.375, 57.12, 58.395);
  ``letterbox=True`` instead keeps the aspect ratio on a zero-padded canvas (upstream's
  ``keep_ratio``), for comparison;
* post-processing as upstream's ``multiclass_nms``: every (cell, class) with probability
  >= threshold (0.3) is a candidate, class-wise NMS at IoU 0.6, at most 100 boxes, best first;
  boxes mapped back to the image's pixels and clipped to it.

    python bench/reference_nanodet.py IMAGE... [--draw DIR]   # prints JSON lines, draws boxes
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from shardlens.quality_set import COCO_CLASSES

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "shardlens" / "models" / "weights" / "nanodet-g" / "nanodet-g-416.onnx"
SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)


def load_rgb(path: str | Path) -> np.ndarray:
    """The image as RGB uint8, EXIF orientation applied (the ground truth's pixel frame)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return keep


class ReferenceNanoDet:
    """NanoDet-g ONNX + GFL decoding + class-wise NMS; ``detect(path)`` -> regions."""

    def __init__(
        self,
        model: str | Path = MODEL,
        threshold: float = 0.3,
        iou: float = 0.6,
        max_detections: int = 100,
        threads: int = 2,
        letterbox: bool = False,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.threshold, self.iou, self.max_detections, self.letterbox = threshold, iou, max_detections, letterbox

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, float, float, float, float]:
        """(input tensor, x scale, y scale, x offset, y offset): model pixel = offset + image pixel x scale."""
        import cv2

        h, w = rgb.shape[:2]
        bgr = rgb[:, :, ::-1]
        if self.letterbox:
            scale = min(SIZE / w, SIZE / h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            canvas = np.zeros((SIZE, SIZE, 3), np.float32)
            ox, oy = (SIZE - nw) // 2, (SIZE - nh) // 2
            resized = cv2.resize(np.ascontiguousarray(bgr), (nw, nh), interpolation=cv2.INTER_LINEAR)
            canvas[oy : oy + nh, ox : ox + nw] = (resized.astype(np.float32) - MEAN_BGR) / STD_BGR
            sx, sy = nw / w, nh / h
        else:
            resized = cv2.resize(np.ascontiguousarray(bgr), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            canvas = (resized.astype(np.float32) - MEAN_BGR) / STD_BGR
            sx, sy, ox, oy = SIZE / w, SIZE / h, 0, 0
        return canvas.transpose(2, 0, 1)[None], sx, sy, float(ox), float(oy)

    def decode(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (K, 4) in model pixels, class probabilities (K, 80)) over all cells of all levels."""
        all_boxes, all_scores = [], []
        for stride in STRIDES:
            cls = outputs[f"cls_s{stride}"][0]
            reg = outputs[f"reg_s{stride}"][0].reshape(-1, 4, REG_MAX + 1)
            side = SIZE // stride
            rows, cols = np.divmod(np.arange(side * side), side)
            cx, cy = (cols + 0.5) * stride, (rows + 0.5) * stride
            logits = reg - reg.max(axis=2, keepdims=True)
            prob = np.exp(logits)
            prob /= prob.sum(axis=2, keepdims=True)
            dist = (prob * np.arange(REG_MAX + 1, dtype=np.float32)).sum(axis=2) * stride  # (HW, 4): l, t, r, b
            all_boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1))
            all_scores.append(cls)
        return np.concatenate(all_boxes), np.concatenate(all_scores)

    def detect_array(self, rgb: np.ndarray) -> list[dict]:
        h, w = rgb.shape[:2]
        tensor, sx, sy, ox, oy = self.preprocess(rgb)
        names = [o.name for o in self.session.get_outputs()]
        outputs = dict(zip(names, self.session.run(names, {self.session.get_inputs()[0].name: tensor})))
        boxes, scores = self.decode(outputs)
        cells, classes = np.nonzero(scores >= self.threshold)
        found: list[tuple[float, int, np.ndarray]] = []
        for c in np.unique(classes):
            sel = cells[classes == c]
            cand_boxes, cand_scores = boxes[sel], scores[sel, c]
            for k in _nms(cand_boxes, cand_scores, self.iou):
                found.append((float(cand_scores[k]), int(c), cand_boxes[k]))
        found.sort(key=lambda item: -item[0])
        regions = []
        for score, c, box in found[: self.max_detections]:
            x0 = float(np.clip((box[0] - ox) / sx, 0, w))
            y0 = float(np.clip((box[1] - oy) / sy, 0, h))
            x1 = float(np.clip((box[2] - ox) / sx, 0, w))
            y1 = float(np.clip((box[3] - oy) / sy, 0, h))
            if x1 > x0 and y1 > y0:
                regions.append({"label": COCO_CLASSES[c], "score": round(score, 5), "bbox": [round(v, 2) for v in (x0, y0, x1, y1)]})
        return regions

    def detect(self, path: str | Path) -> list[dict]:
        """Regions of one image file, best first: ``{"label", "score", "bbox": [x0, y0, x1, y1]}``."""
        return self.detect_array(load_rgb(path))


def draw(path: str | Path, regions: list[dict], out: Path) -> None:
    from PIL import Image, ImageDraw

    image = Image.fromarray(load_rgb(path))
    pen = ImageDraw.Draw(image)
    for r in regions:
        pen.rectangle(r["bbox"], outline=(255, 0, 0), width=3)
        pen.text((r["bbox"][0] + 4, r["bbox"][1] + 2), f"{r['label']} {r['score']:.2f}", fill=(255, 255, 0))
    image.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--letterbox", action="store_true", help="keep the aspect ratio (zero padding) instead of stretching")
    parser.add_argument("--draw", type=Path, help="write a copy of each image with its boxes into this folder")
    args = parser.parse_args()
    detector = ReferenceNanoDet(threshold=args.threshold, letterbox=args.letterbox)
    if args.draw:
        args.draw.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        t0 = time.perf_counter()
        regions = detector.detect(path)
        print(json.dumps({"file": str(path), "ms": round((time.perf_counter() - t0) * 1000, 1), "regions": regions}))
        if args.draw:
            draw(path, regions, args.draw / f"{path.stem}.png")


if __name__ == "__main__":
    main()
