"""The bundled files the demo is made of: sample photos that scikit-image, matplotlib and
scikit-learn ship inside their wheels, and matplotlib's DejaVu fonts (see ``data/sources.yaml``)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from PIL import Image, ImageFont

from .tables import FONT_FILES, SOURCE_FILES


def _package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package {package!r} is not installed")
    return Path(spec.origin).parent


def source_path(name: str) -> Path:
    """Path of a bundled sample image (see ``SOURCE_FILES``)."""
    package, relative = SOURCE_FILES[name]
    path = _package_dir(package) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} does not ship {relative} ({path})")
    return path


def source_label(name: str) -> str:
    """Human-readable origin of a bundled sample image."""
    package, relative = SOURCE_FILES[name]
    return f"{package}/{relative}"


@functools.cache
def load_source(name: str) -> Image.Image:
    """Decode a bundled image as RGB or L, without any metadata."""
    with Image.open(source_path(name)) as img:
        mode = "L" if img.mode in ("L", "LA", "I;16", "1") else "RGB"
        return strip_metadata(img.convert(mode))


def strip_metadata(img: Image.Image) -> Image.Image:
    """Copy of ``img`` with empty ``info`` so no ICC profile/comment is re-saved."""
    return Image.frombytes(img.mode, img.size, img.tobytes())


@functools.cache
def font(style: str, size: int) -> ImageFont.FreeTypeFont:
    """DejaVu font shipped by matplotlib; ``style`` is a key of ``FONT_FILES``."""
    path = _package_dir("matplotlib") / "mpl-data" / "fonts" / "ttf" / FONT_FILES[style]
    return ImageFont.truetype(str(path), size)


def photo_crop(name: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image:
    """RGB crop ``box`` (left, top, right, bottom) of a sample photo, resized to ``size``."""
    crop = load_source(name).convert("RGB").crop(box)
    return crop.resize(size, Image.Resampling.LANCZOS)
