"""The demo's tables, kept as data in ``data/*.yaml`` beside this module.

``PHOTOS``, ``TEXT_IMAGES`` and ``NOTEXT_IMAGES`` list the images to write, one dict per image
(their keys are described at the top of each file); ``SOURCE_FILES`` and ``FONT_FILES`` name the
bundled files they are made of. Sequences of numbers (sizes, boxes, colours) are tuples here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DATA_DIR = Path(__file__).parent / "data"


def _tuples(value: Any) -> Any:
    """``value`` with every non-empty list of numbers made a tuple (Pillow takes colours and sizes so)."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, int | float) and not isinstance(item, bool) for item in value):
            return tuple(value)
        return [_tuples(item) for item in value]
    return value


def _load(name: str) -> Any:
    return _tuples(yaml.safe_load((DATA_DIR / name).read_text(encoding="utf-8")))


_SOURCES = _load("sources.yaml")

#: Where each bundled file lives, relative to its package directory.
SOURCE_FILES: dict[str, tuple[str, str]] = {name: tuple(where) for name, where in _SOURCES["source_files"].items()}

FONT_FILES: dict[str, str] = _SOURCES["font_files"]

#: Table 1: real photos.
PHOTOS: list[dict[str, Any]] = _load("photos.yaml")

#: Table 2: generated images with text.
TEXT_IMAGES: list[dict[str, Any]] = _load("text_images.yaml")

#: Table 3: generated images without text.
NOTEXT_IMAGES: list[dict[str, Any]] = _load("notext_images.yaml")
