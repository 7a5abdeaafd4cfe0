"""The dashboard's thumbnail cache: small JPEGs on disk, keyed by image id, size and what is
drawn on them (boxes, captions), made once and served from disk afterwards.

The cache lives beside the catalog (``results/.thumbnails/`` for ``results/annotations.sqlite``)
in folders named by the first two hex digits of the image id. An image id is the sha256 of the
file's bytes, so an entry never goes stale: a changed file is a new id, and a changed box or
label is a new key. Files are written atomically (:func:`shardlens.atomic.atomic_open`), so two
sessions drawing the same thumbnail never see half a file. Deleting the folder is always safe.

A source file that cannot be read (moved, images root unknown) gives a grey placeholder of the
image's size with its boxes, never cached under the real key.

Captions are drawn in DejaVu Sans, which ships with matplotlib (a dependency) and covers Latin,
Greek and Cyrillic: Pillow's default font draws "Příliš žluťoučký kůň" as missing-glyph boxes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_open
from ..images.decoding import ImageError, Limits, open_image, read_bytes, to_rgb_array

CACHE_VERSION = "2"  # bump when the drawing changes, so old entries are not reused
QUALITY = 85

# box colours by review state (and OCR lines)
COLORS = {
    "machine": "#ff9500",
    "accepted": "#34c759",
    "relabeled": "#007aff",
    "rejected": "#ff3b30",
    "text": "#00c7be",
    "highlight": "#ff2d55",
}


@dataclass(frozen=True)
class Box:
    """A box in image coordinates (EXIF-oriented, as the catalog stores them) and its caption."""

    bbox: tuple[float, float, float, float]
    label: str = ""
    color: str = COLORS["machine"]
    width: int = 3


def default_cache_dir(catalog_db: str | Path) -> Path:
    """``results/.thumbnails`` for ``results/annotations.sqlite``."""
    return Path(catalog_db).resolve().parent / ".thumbnails"


def caption_font_path() -> Path:
    """DejaVu Sans as matplotlib ships it (``mpl-data/fonts/ttf``), else Debian's fonts-dejavu."""
    import matplotlib

    for path in (
        Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf",
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    ):
        if path.is_file():
            return path
    raise FileNotFoundError(f"DejaVuSans.ttf is missing from {matplotlib.get_data_path()}/fonts/ttf: reinstall matplotlib")


@functools.lru_cache(maxsize=64)
def caption_font(px: int) -> ImageFont.FreeTypeFont:
    """The caption font (DejaVu Sans) at ``px`` pixels."""
    return ImageFont.truetype(str(caption_font_path()), int(px))


def caption_px(image_width: int) -> int:
    """Caption size on a thumbnail ``image_width`` pixels wide."""
    return max(11, min(22, image_width // 45))


@dataclass(frozen=True)
class Caption:
    """Where :meth:`ThumbnailCache.get` draws one box's caption: ``rect`` (x0, y0, x1, y1) is
    filled with the box's colour and the text is drawn in white at ``origin`` in ``caption_font(px)``."""

    label: str
    color: str
    rect: tuple[float, float, float, float]
    origin: tuple[float, float]
    px: int


def caption_layout(boxes: Sequence[Box], scale: float, size: tuple[int, int]) -> list[Caption]:
    """The captions of ``boxes`` on a thumbnail of ``size`` whose boxes are scaled by ``scale``:
    above the box's top-left corner (inside it when there is no room), moved down past captions
    already placed so none covers another."""
    width, _ = size
    px = caption_px(width)
    font = caption_font(px)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    placed: list[tuple[float, float, float, float]] = []
    out = []
    for box in boxes:
        if not box.label:
            continue
        x0, y0 = box.bbox[0] * scale, box.bbox[1] * scale
        left, top, right, bottom = probe.textbbox((0, 0), box.label, font=font)
        tw, th = right - left + 6, bottom - top + 4
        x0 = max(0.0, min(x0, width - tw))
        ty = y0 - th if y0 - th >= 0 else y0
        for _ in range(len(placed) + 1):  # move down past captions already placed
            clash = next((p for p in placed if x0 < p[2] and p[0] < x0 + tw and ty < p[3] and p[1] < ty + th), None)
            if clash is None:
                break
            ty = clash[3] + 1
        placed.append((x0, ty, x0 + tw, ty + th))
        out.append(Caption(box.label, box.color, (x0, ty, x0 + tw, ty + th), (x0 + 3 - left, ty + 2 - top), px))
    return out


class ThumbnailCache:
    def __init__(self, cache_dir: str | Path, images_root: str | Path | None, limits: Limits | None = None):
        self.cache_dir = Path(cache_dir)
        self.images_root = Path(images_root) if images_root else None
        self.limits = limits or Limits.from_values()  # the schema's default limits

    # ---------------------------------------------------------------- keys and paths
    @staticmethod
    def key(image_id: str, size: int, boxes: Sequence[Box] = ()) -> str:
        if boxes:
            spec = json.dumps([asdict(b) for b in boxes], sort_keys=True, separators=(",", ":"))
            drawn = hashlib.sha1(f"{CACHE_VERSION}:{spec}".encode()).hexdigest()[:16]
        else:
            drawn = f"plain{CACHE_VERSION}"
        return f"{image_id}-{int(size)}-{drawn}"

    def path_for(self, image_id: str, size: int, boxes: Sequence[Box] = ()) -> Path:
        return self.cache_dir / image_id[:2] / f"{self.key(image_id, size, boxes)}.jpg"

    def source(self, rel_path: str | None) -> Path | None:
        if not rel_path:
            return None
        path = Path(rel_path)
        if not path.is_absolute():
            if self.images_root is None:
                return None
            path = self.images_root / path
        return path if path.is_file() else None

    # ---------------------------------------------------------------------- drawing
    def get(
        self,
        image_id: str,
        rel_path: str | None,
        size: int = 256,
        boxes: Sequence[Box] = (),
        width: int | None = None,
        height: int | None = None,
    ) -> Path:
        """The thumbnail (longer side ``size``) with ``boxes`` drawn, made on first use.

        ``width``/``height`` are the image's size in the catalog (the frame of the boxes); they
        let JPEGs decode at a reduced scale and size the placeholder of an unreadable file."""
        source = self.source(rel_path)
        target = self.path_for(image_id, size, boxes)
        if source is not None and target.exists():
            return target
        image = None
        if source is not None:
            try:
                image = open_image(read_bytes(source, self.limits), self.limits, draft_size=size if width else None, name=source.name)
            except ImageError:
                image = None
        if image is None:
            placeholder = target.with_name(target.stem + "-missing.jpg")
            if placeholder.exists():
                return placeholder
            full = (width or 640, height or 480)
            image = Image.new("RGB", full, (200, 200, 200))
            note = f"no file: {rel_path}" if rel_path else "no path"
            ImageDraw.Draw(image).text((8, 8), note, fill=(60, 60, 60), font=caption_font(max(12, full[0] // 40)))
            target = placeholder
        frame_w = width or image.width
        thumb = Image.fromarray(to_rgb_array(image))
        scale = min(1.0, size / max(thumb.width, thumb.height))
        if scale < 1.0:
            thumb = thumb.resize((max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))), Image.Resampling.LANCZOS)
        self._draw(thumb, boxes, thumb.width / frame_w)
        self._write(thumb, target)
        return target

    @staticmethod
    def _draw(image: Image.Image, boxes: Sequence[Box], scale: float) -> None:
        if not boxes:
            return
        draw = ImageDraw.Draw(image)
        line = max(2, round(max(image.width, image.height) / 300))  # 2 px on a 320 px sample, 3 on 1024
        for box in boxes:  # all frames first, so no frame covers a caption
            x0, y0, x1, y1 = (v * scale for v in box.bbox)
            draw.rectangle((x0, y0, x1, y1), outline=box.color, width=max(1, line * box.width // 3))
        for caption in caption_layout(boxes, scale, image.size):
            draw.rectangle(caption.rect, fill=caption.color)
            draw.text(caption.origin, caption.label, fill="white", font=caption_font(caption.px))

    @staticmethod
    def _write(image: Image.Image, target: Path) -> None:
        # a cache: not fsynced (a lost entry is drawn again), but never seen half-written
        with atomic_open(target, "wb", durable=False) as handle:
            image.save(handle, format="JPEG", quality=QUALITY)
