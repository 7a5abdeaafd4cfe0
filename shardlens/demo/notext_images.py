"""Renderers of the generated images without text (``data/notext_images.yaml``): each takes an
image's table entry and its own random generator and returns the image."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .sources import photo_crop

BASE_SEED = 20240531


def image_rng(index: int) -> np.random.Generator:
    """Per-image generator, so adding an image never changes the others."""
    return np.random.default_rng([BASE_SEED, index])


def _blend(c0: tuple[int, ...], c1: tuple[int, ...], t: np.ndarray) -> Image.Image:
    """Image from a 2-D weight map ``t`` in [0, 1] interpolating colour c0 -> c1."""
    a, b = np.asarray(c0, float), np.asarray(c1, float)
    pixels = a + (b - a) * t[..., None]
    return Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")


def render_linear(spec: dict[str, Any], rng: np.random.Generator) -> Image.Image:
    w, h = spec["size"]
    x = np.linspace(0.0, 1.0, w)[None, :]
    y = np.linspace(0.0, 1.0, h)[:, None]
    return _blend(*spec["colors"], 0.7 * x + 0.3 * y)


def render_radial(spec: dict[str, Any], rng: np.random.Generator) -> Image.Image:
    w, h = spec["size"]
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = 0.4 * w, 0.45 * h
    dist = np.hypot(xx - cx, yy - cy) / np.hypot(w, h)
    return _blend(*spec["colors"], np.clip(dist * 1.6, 0.0, 1.0))


def render_shapes(spec: dict[str, Any], rng: np.random.Generator) -> Image.Image:
    """Large filled circles, ellipses, squares and triangles: no strokes, no glyph-like bars."""
    w, h = spec["size"]
    background = tuple(int(v) for v in rng.integers(200, 250, 3))
    img = Image.new("RGB", (w, h), background)
    draw = ImageDraw.Draw(img)
    for _ in range(spec["count"]):
        colour = tuple(int(v) for v in rng.integers(40, 230, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(60, 150))
        shape = int(rng.integers(0, 4))
        if shape == 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        elif shape == 1:
            ry = int(r * rng.uniform(0.6, 1.0))
            draw.ellipse((cx - r, cy - ry, cx + r, cy + ry), fill=colour)
        elif shape == 2:
            ry = int(r * rng.uniform(0.7, 1.0))
            draw.rectangle((cx - r, cy - ry, cx + r, cy + ry), fill=colour)
        else:
            start = rng.uniform(0, 2 * np.pi)
            angles = [start + k * 2 * np.pi / 3 for k in range(3)]
            corners = [(round(cx + r * np.cos(a)), round(cy + r * np.sin(a))) for a in angles]
            draw.polygon(corners, fill=colour)
    return img.filter(ImageFilter.GaussianBlur(1.5))


def render_noise(spec: dict[str, Any], rng: np.random.Generator) -> Image.Image:
    """Low-frequency colour noise: a small random grid upscaled and blurred."""
    w, h = spec["size"]
    coarse = (60 + rng.random((h // 50, w // 50, 3)) * 140).astype(np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    return img.filter(ImageFilter.GaussianBlur(spec["blur"]))


def render_solid(spec: dict[str, Any], rng: np.random.Generator) -> Image.Image:
    return Image.new("RGB", spec["size"], spec["colors"][0])


def render_crop(spec: dict[str, Any], rng: np.random.Generator) -> Image.Image:
    return photo_crop(spec["photo"], spec["box"], spec["size"])


NOTEXT_RENDERERS: dict[str, Callable[[dict[str, Any], np.random.Generator], Image.Image]] = {
    "linear": render_linear,
    "radial": render_radial,
    "shapes": render_shapes,
    "noise": render_noise,
    "solid": render_solid,
    "crop": render_crop,
}
