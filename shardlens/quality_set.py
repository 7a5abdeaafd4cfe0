"""The real-image quality set: load and validate ``tests/quality/ground_truth.json``.

Format (version 1): ``{"version": 1, "images": [...]}``, one entry per image file, ``file``
relative to the images folder (``tests/quality/images``). Boxes are pixels of the image after EXIF
orientation, ``[x0, y0, x1, y1]`` with x1 and y1 exclusive. ``has_text`` null means ambiguous (left
out of the gate metrics). Class names are COCO-80 as the NanoDet detector names them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CATEGORIES = ("documents", "scene_text", "frame_text", "rotated", "small_text", "objects", "nature", "textures", "small_photo")
SPLITS = ("fit", "test")
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
_KEYS = {
    "file",
    "category",
    "split",
    "has_text",
    "text",
    "optional_text",
    "classes",
    "optional_classes",
    "boxes",
    "optional_boxes",
    "notes",
}
_LISTS = ("text", "optional_text", "classes", "optional_classes", "boxes", "optional_boxes")


class QualitySetError(ValueError):
    """The ground truth is not usable as it is; the message lists every problem with its image."""


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_box(where: str, box: Any, size: tuple[int, int] | None) -> list[str]:
    if not isinstance(box, dict) or set(box) - {"label", "bbox"}:
        return [f"{where}: must be {{'label': ..., 'bbox': [x0, y0, x1, y1]}}"]
    problems = []
    if box.get("label") not in COCO_CLASSES:
        problems.append(f"{where}: label {box.get('label')!r} is not a COCO-80 class")
    bbox = box.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox)):
        return [*problems, f"{where}: bbox must be four numbers [x0, y0, x1, y1]"]
    x0, y0, x1, y1 = bbox
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        problems.append(f"{where}: bbox {bbox} must have 0 <= x0 < x1 and 0 <= y0 < y1")
    if size and (x1 > size[0] or y1 > size[1]):
        problems.append(f"{where}: bbox {bbox} reaches outside the {size[0]}x{size[1]} image")
    return problems


def validate_image(entry: Any, images_root: Path | None = None) -> list[str]:
    """Problems of one ground-truth entry (empty when it is fine)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
        return [f"entry {entry!r:.80}: must be an object with a non-empty 'file'"]
    where = entry["file"]
    problems = []
    if unknown := set(entry) - _KEYS:
        problems.append(f"{where}: unknown keys {sorted(unknown)}")
    if entry.get("category") not in CATEGORIES:
        problems.append(f"{where}: category {entry.get('category')!r} is not one of {', '.join(CATEGORIES)}")
    if entry.get("split") not in SPLITS:
        problems.append(f"{where}: split {entry.get('split')!r} must be fit or test")
    if entry.get("has_text", None) not in (True, False, None) or "has_text" not in entry:
        problems.append(f"{where}: has_text must be true, false or null")
    for key in _LISTS:
        if not isinstance(entry.get(key, []), list):
            problems.append(f"{where}: {key} must be a list")
    if problems:
        return problems
    for key in ("text", "optional_text"):
        if not all(isinstance(t, str) and t.strip() for t in entry.get(key, [])):
            problems.append(f"{where}: {key} must hold non-empty strings")
    if entry.get("has_text") is False and entry.get("text"):
        problems.append(f"{where}: has_text is false but text is given")
    for key in ("classes", "optional_classes"):
        for name in entry.get(key, []):
            if name not in COCO_CLASSES:
                problems.append(f"{where}: {key} has {name!r}, not a COCO-80 class")
    if overlap := set(entry.get("classes", [])) & set(entry.get("optional_classes", [])):
        problems.append(f"{where}: {sorted(overlap)} both in classes and optional_classes")
    size = None
    if images_root is not None:
        path = images_root / where
        if not path.is_file():
            return [*problems, f"{where}: no such file under {images_root}"]
        size = image_size(path)
    for key in ("boxes", "optional_boxes"):
        for i, box in enumerate(entry.get(key, [])):
            problems += _check_box(f"{where} {key}[{i}]", box, size)
    allowed = set(entry.get("classes", [])) | set(entry.get("optional_classes", []))
    for box in entry.get("boxes", []):
        if isinstance(box, dict) and box.get("label") in COCO_CLASSES and box["label"] not in entry.get("classes", []):
            problems.append(f"{where}: box label {box['label']!r} is not in classes")
    for box in entry.get("optional_boxes", []):
        if isinstance(box, dict) and box.get("label") in COCO_CLASSES and box["label"] not in allowed:
            problems.append(f"{where}: optional box label {box['label']!r} is in neither classes nor optional_classes")
    return problems


def load_ground_truth(path: str | Path, images_root: str | Path | None = None) -> list[dict]:
    """The validated entries of a ground-truth file, every list key present (empty when absent).

    With ``images_root`` every file must exist there, hold bytes no other entry holds, and every
    box must lie inside its image.
    Raises :class:`QualitySetError` naming every problem found.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise QualitySetError(f"{path}: cannot be read as JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("images"), list):
        raise QualitySetError(f"{path}: must be {{'version': 1, 'images': [...]}}")
    root = Path(images_root) if images_root is not None else None
    problems: list[str] = []
    seen: set[str] = set()
    digests: dict[str, str] = {}
    for entry in data["images"]:
        problems += validate_image(entry, root)
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            if entry["file"] in seen:
                problems.append(f"{entry['file']}: listed twice")
            seen.add(entry["file"])
            if root is not None and (root / entry["file"]).is_file():
                digest = hashlib.sha256((root / entry["file"]).read_bytes()).hexdigest()
                if digest in digests:
                    problems.append(f"{entry['file']}: the same bytes as {digests[digest]} (the workflow would see one image)")
                digests.setdefault(digest, entry["file"])
    if problems:
        raise QualitySetError(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return [{**{k: [] for k in _LISTS}, "notes": "", **entry} for entry in data["images"]]
