"""Deterministic demo image collection for trying out and testing shardlens.

``generate_demo(out_dir)`` writes about 40 images plus ``ground_truth.json`` and
``CREDITS.md`` into ``out_dir``. Nothing is downloaded: the real photos are the
sample images that scikit-image, matplotlib and scikit-learn ship inside their
wheels, the fonts are the DejaVu fonts shipped by matplotlib, and everything
else is drawn here with Pillow and numpy from fixed seeds. With the same
package versions every run on every machine writes the same bytes.

Layout of ``out_dir``::

    photos/    real photos (people, a cat, a cup, a motorcycle, a scanned page)
    text/      generated images with known text: signs pasted on photos, a
               letter, a screenshot, rotated text, paragraphs in six languages
    notext/    generated images without any text: gradients, shapes, blurred
               noise, text-free photo crops, a solid colour, a 64x64 image

``ground_truth.json`` maps each image path (posix, relative to ``out_dir``) to::

    category   "photo" | "text" | "notext"
    lines      exact text lines, top to bottom in the unrotated layout (lines
               of one visual row are listed left to right); [] when unknown
    clean      True for horizontal, plain-background, high-contrast text that
               OCR is expected to read almost perfectly (CER <= 0.02)
    rotation   degrees the text is rotated counter-clockwise (0, 15, 90, 180)
    language   ISO 639-1 code of the text, or null
    objects    COCO class names a detector is expected to find
    has_text   whether the image contains legible text
    source     where the pixels came from

Run ``python -m shardlens.demo OUT_DIR`` to write the collection from a shell.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .atomic import atomic_open

BASE_SEED = 20240531
JPEG_QUALITY = 90
WEBP_QUALITY = 90

INK = (20, 20, 24)  # near-black text colour for clean images
PAPER = (255, 255, 255)

# --------------------------------------------------------------------------- #
# Bundled source files
# --------------------------------------------------------------------------- #

#: Where each bundled file lives, relative to its package directory.
SOURCE_FILES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "camera": ("skimage", "data/camera.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "page": ("skimage", "data/page.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}

FONT_FILES: dict[str, str] = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "mono": "DejaVuSansMono.ttf",
}


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
        return _strip(img.convert(mode))


def _strip(img: Image.Image) -> Image.Image:
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


# --------------------------------------------------------------------------- #
# Table 1: real photos
# --------------------------------------------------------------------------- #

PHOTOS: list[dict[str, Any]] = [
    {"path": "photos/astronaut.png", "source": "astronaut", "objects": ["person"]},
    # Her uniform carries a small legible name tag ("... HOPPER").
    {"path": "photos/grace_hopper.jpg", "source": "grace_hopper", "objects": ["person"],
     "has_text": True},
    # The "camera" photo shows a man behind a tripod camera.
    {"path": "photos/camera.png", "source": "camera", "objects": ["person"]},
    {"path": "photos/chelsea.jpg", "source": "chelsea", "objects": ["cat"]},
    {"path": "photos/coffee.jpg", "source": "coffee", "objects": ["cup"]},
    # The tank and side cover carry brand logos ("YAMAHA", "MAXIMA").
    {"path": "photos/motorcycle_left.jpg", "source": "motorcycle_left", "objects": ["motorcycle"],
     "has_text": True},
    {"path": "photos/rocket.JPG", "source": "rocket", "objects": []},
    {"path": "photos/china.jpg", "source": "china", "objects": []},
    {"path": "photos/flower.jpg", "source": "flower", "objects": []},
    # A scan of a printed English page: real text whose exact lines are not recorded.
    {"path": "photos/page.png", "source": "page", "objects": [], "has_text": True,
     "language": "en"},
]

# --------------------------------------------------------------------------- #
# Table 2: generated images with text
# --------------------------------------------------------------------------- #
# kind "sign":      a light panel with dark text pasted on a photo crop
# kind "paragraph": dark lines on a plain background (also used for rotations)
# kind "receipt":   monospace item/price rows (price right-aligned)
# kind "screen":    a screenshot-like window: title, label rows, two buttons

TEXT_IMAGES: list[dict[str, Any]] = [
    # (a) signs on photos
    {"path": "text/signs/sign_exit.jpg", "kind": "sign", "lines": ["EXIT"],
     "photo": "camera", "box": (350, 110, 510, 230), "panel": (214, 240, 214), "ink": (10, 70, 30),
     "font": "sans-bold", "size": 110, "at": (0.5, 0.45)},
    {"path": "text/signs/sign_open_24_hours.jpg", "kind": "sign", "lines": ["OPEN", "24 HOURS"],
     "photo": "rocket", "box": (340, 0, 640, 225), "panel": (250, 250, 245), "ink": (170, 20, 20),
     "font": "sans-bold", "size": 72, "at": (0.45, 0.5)},
    {"path": "text/signs/sign_no_parking.jpg", "kind": "sign", "lines": ["NO PARKING"],
     "photo": "china", "box": (0, 0, 320, 240), "panel": (255, 255, 255), "ink": (200, 0, 0),
     "font": "sans-bold", "size": 72, "at": (0.5, 0.7)},
    {"path": "text/signs/sign_main_street.jpg", "kind": "sign", "lines": ["Main Street"],
     "photo": "coffee", "box": (400, 180, 600, 330), "panel": (235, 245, 255), "ink": (15, 35, 90),
     "font": "sans", "size": 80, "at": (0.5, 0.4)},
    {"path": "text/signs/sign_cafe.png", "kind": "sign", "lines": ["CAFE"],
     "photo": "flower", "box": (0, 0, 320, 240), "panel": (250, 236, 200), "ink": (60, 30, 10),
     "font": "serif", "size": 120, "at": (0.6, 0.5)},
    {"path": "text/signs/sign_bus_stop.jpg", "kind": "sign", "lines": ["BUS STOP", "Line 42"],
     "photo": "china", "box": (400, 247, 640, 427), "panel": (255, 230, 60), "ink": (20, 20, 20),
     "font": "sans-bold", "size": 64, "at": (0.5, 0.5)},
    # (b) a letter
    {"path": "text/document_letter.png", "kind": "paragraph", "font": "serif", "size": 40,
     "width": 1000, "bg": (252, 250, 244), "ink": INK, "clean": True, "language": "en",
     "lines": [
         "Riverside Public Library",
         "14 March 2024",
         "Dear Ms. Alvarez,",
         "Thank you for your letter about the",
         "community reading room. We are happy",
         "to confirm that the room is available",
         "every Saturday from nine until noon.",
         "Kind regards,",
         "Daniel Brooks",
     ]},
    # (c) a screenshot
    {"path": "text/screenshot_settings.png", "kind": "screen", "font": "sans", "size": 40,
     "width": 900, "clean": False, "language": "en",
     "lines": [
         "Account Settings",
         "Name: Ada Lovelace",
         "Email: ada@example.org",
         "Language: English",
         "Cancel",
         "Save",
     ]},
    # a receipt in monospace and a poster with light text on a dark background
    {"path": "text/receipt_mono.png", "kind": "receipt", "font": "mono", "size": 40,
     "width": 800, "bg": PAPER, "ink": INK, "clean": True, "language": "en",
     "lines": [
         "GREEN GROCER",
         "Apples 4.80",
         "Bread 2.35",
         "Cheese 6.10",
         "TOTAL 13.25",
     ]},
    {"path": "text/poster_dark.png", "kind": "paragraph", "font": "sans-bold", "size": 48,
     "width": 900, "bg": (18, 28, 60), "ink": (255, 255, 255), "clean": True, "language": "en",
     "lines": [
         "SUMMER FESTIVAL",
         "Live music every Friday",
         "Tickets at the door",
     ]},
    {"path": "text/low_contrast.jpg", "kind": "paragraph", "font": "sans", "size": 44,
     "width": 900, "bg": (200, 200, 200), "ink": (150, 150, 150), "clean": False, "language": "en",
     "lines": [
         "Faint text on a grey wall",
         "is hard to read",
     ]},
    # (d) rotated text
    {"path": "text/rotated/rotated_090.png", "kind": "paragraph", "font": "sans", "size": 44,
     "width": 800, "bg": PAPER, "ink": INK, "clean": False, "language": "en", "rotation": 90,
     "lines": ["Delivery entrance", "Please use the side door"]},
    {"path": "text/rotated/rotated_180.png", "kind": "paragraph", "font": "sans", "size": 44,
     "width": 800, "bg": PAPER, "ink": INK, "clean": False, "language": "en", "rotation": 180,
     "lines": ["Handle with care", "This side up"]},
    {"path": "text/rotated/tilted_015.jpg", "kind": "paragraph", "font": "sans", "size": 44,
     "width": 800, "bg": PAPER, "ink": INK, "clean": False, "language": "en", "rotation": 15,
     "lines": ["Welcome to the harbour", "Boats leave every hour"]},
    # (e) Latin-script languages with diacritics
    {"path": "text/languages/fr_chateau.png", "kind": "paragraph", "font": "sans", "size": 42,
     "width": 900, "bg": PAPER, "ink": INK, "clean": True, "language": "fr",
     "lines": [
         "Château de la Loire, été 2024",
         "Visite guidée du musée à côté",
         "Le garçon a réservé une fenêtre",
     ]},
    {"path": "text/languages/de_muenchen.png", "kind": "paragraph", "font": "sans", "size": 42,
     "width": 900, "bg": PAPER, "ink": INK, "clean": True, "language": "de",
     "lines": [
         "Grüße aus München",
         "Die Straße ist schön und ruhig",
         "Geöffnet täglich außer Montag",
     ]},
    {"path": "text/languages/es_estacion.png", "kind": "paragraph", "font": "serif", "size": 42,
     "width": 900, "bg": PAPER, "ink": INK, "clean": True, "language": "es",
     "lines": [
         "¿Dónde está la estación?",
         "El niño pidió un café con leche",
         "Mañana habrá señales nuevas",
     ]},
    {"path": "text/languages/pt_informacao.png", "kind": "paragraph", "font": "sans", "size": 42,
     "width": 900, "bg": (250, 250, 250), "ink": INK, "clean": True, "language": "pt",
     "lines": [
         "Informação para visitantes",
         "A estação fica no coração da cidade",
         "Não há lições amanhã",
     ]},
    {"path": "text/languages/pl_lodz.png", "kind": "paragraph", "font": "sans", "size": 42,
     "width": 900, "bg": PAPER, "ink": INK, "clean": True, "language": "pl",
     "lines": [
         "Łódź jest pięknym miastem",
         "Żółty kot śpi na ławce",
         "Śniadanie podajemy o ósmej",
     ]},
    {"path": "text/languages/cs_praha.png", "kind": "paragraph", "font": "sans", "size": 42,
     "width": 900, "bg": PAPER, "ink": INK, "clean": True, "language": "cs",
     "lines": [
         "Příliš žlutý kůň úpěl",
         "Vítejte v Praze, městě věží",
         "Řeka teče pod mostem",
     ]},
]

# --------------------------------------------------------------------------- #
# Table 3: generated images without text
# --------------------------------------------------------------------------- #

NOTEXT_IMAGES: list[dict[str, Any]] = [
    {"path": "notext/gradient_linear.png", "kind": "linear", "size": (800, 600),
     "colors": [(30, 60, 160), (240, 180, 90)]},
    {"path": "notext/gradient_radial.jpg", "kind": "radial", "size": (800, 600),
     "colors": [(250, 240, 220), (40, 90, 70)]},
    {"path": "notext/shapes_01.png", "kind": "shapes", "size": (800, 600), "count": 9},
    {"path": "notext/shapes_02.jpg", "kind": "shapes", "size": (800, 600), "count": 14},
    {"path": "notext/textures/blurred/noise_soft.png", "kind": "noise", "size": (800, 600),
     "blur": 10},
    {"path": "notext/solid_teal.png", "kind": "solid", "size": (640, 480),
     "colors": [(0, 128, 128)]},
    # Crop boxes were checked by eye and with RapidOCR to contain no text.
    # "chelsea" is not used here: RapidOCR reads the cat's eyes and nose as
    # "0", "A" or "P" in most crops.
    {"path": "notext/tiny_64.png", "kind": "crop", "size": (64, 64),
     "photo": "flower", "box": (200, 80, 440, 320), "objects": []},
    {"path": "notext/crop_wood.jpg", "kind": "crop", "size": (480, 360),
     "photo": "coffee", "box": (420, 0, 600, 135), "objects": []},
    {"path": "notext/crop_astronaut.jpg", "kind": "crop", "size": (400, 400),
     "photo": "astronaut", "box": (60, 40, 330, 310), "objects": ["person"]},
    {"path": "notext/crop_coffee.JPG", "kind": "crop", "size": (480, 360),
     "photo": "coffee", "box": (60, 0, 500, 330), "objects": ["cup"]},
    {"path": "notext/crop_flower.webp", "kind": "crop", "size": (480, 360),
     "photo": "flower", "box": (160, 60, 560, 360), "objects": []},
    {"path": "notext/crop_china_lake.jpg", "kind": "crop", "size": (560, 420),
     "photo": "china", "box": (330, 200, 610, 410), "objects": []},
]


# --------------------------------------------------------------------------- #
# Text rendering
# --------------------------------------------------------------------------- #


def _line_pitch(size: int) -> int:
    return round(size * 1.45)


def _text_width(text: str, fnt: ImageFont.FreeTypeFont) -> int:
    return round(fnt.getlength(text))


def _check_fits(lines: list[str], fnt: ImageFont.FreeTypeFont, max_width: int, path: str) -> None:
    for line in lines:
        if _text_width(line, fnt) > max_width:
            raise ValueError(f"{path}: line {line!r} is wider than {max_width}px")


def render_paragraph(spec: dict[str, Any]) -> Image.Image:
    """Dark (or light) lines, left-aligned, on a plain background; then rotated."""
    fnt = font(spec["font"], spec["size"])
    margin = 60
    pitch = _line_pitch(spec["size"])
    width = spec["width"]
    _check_fits(spec["lines"], fnt, width - 2 * margin, spec["path"])
    height = 2 * margin + pitch * len(spec["lines"])
    img = Image.new("RGB", (width, height), spec["bg"])
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(spec["lines"]):
        draw.text((margin, margin + i * pitch), line, font=fnt, fill=spec["ink"])
    return _rotate(img, spec.get("rotation", 0), spec["bg"])


def _rotate(img: Image.Image, degrees: int, fill: tuple[int, int, int]) -> Image.Image:
    """Rotate counter-clockwise; exact for multiples of 90, bicubic otherwise."""
    if degrees % 90 == 0:
        transposes = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180,
                      270: Image.Transpose.ROTATE_270}
        return img.transpose(transposes[degrees % 360]) if degrees % 360 else img
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def render_receipt(spec: dict[str, Any]) -> Image.Image:
    """First line centred as a heading, then 'item price' rows with prices right-aligned."""
    fnt = font(spec["font"], spec["size"])
    margin = 70
    pitch = _line_pitch(spec["size"])
    width = spec["width"]
    _check_fits(spec["lines"], fnt, width - 2 * margin, spec["path"])
    img = Image.new("RGB", (width, 2 * margin + pitch * len(spec["lines"])), spec["bg"])
    draw = ImageDraw.Draw(img)
    heading, *rows = spec["lines"]
    draw.text((width // 2, margin), heading, font=fnt, fill=spec["ink"], anchor="ma")
    for i, row in enumerate(rows, start=1):
        item, price = row.rsplit(" ", 1)
        y = margin + i * pitch
        draw.text((margin, y), item, font=fnt, fill=spec["ink"])
        draw.text((width - margin, y), price, font=fnt, fill=spec["ink"], anchor="ra")
    return img


def render_screen(spec: dict[str, Any]) -> Image.Image:
    """A window: title bar, 'Label: value' rows, and two buttons on the last row."""
    fnt = font(spec["font"], spec["size"])
    bold = font("sans-bold", spec["size"])
    title, *rows = spec["lines"]
    rows, buttons = rows[:-2], rows[-2:]
    width, bar, pitch, margin = spec["width"], 80, 80, 50
    height = bar + margin + pitch * len(rows) + 130
    img = Image.new("RGB", (width, height), (236, 238, 242))
    draw = ImageDraw.Draw(img)
    # title bar with window controls (plain filled dots, no glyphs)
    draw.rectangle((0, 0, width, bar), fill=(44, 62, 80))
    for k, colour in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        cx = 30 + k * 34
        draw.ellipse((cx - 11, bar // 2 - 11, cx + 11, bar // 2 + 11), fill=colour)
    draw.text((width // 2, bar // 2), title, font=bold, fill=(255, 255, 255), anchor="mm")
    # label rows on a white card
    card_top = bar + margin // 2
    draw.rectangle((30, card_top, width - 30, card_top + pitch * len(rows) + 20), fill=PAPER)
    for i, row in enumerate(rows):
        draw.text((60, card_top + 20 + i * pitch), row, font=fnt, fill=INK)
    # buttons, right-aligned: a light one and a blue one
    y0 = height - 100
    styles = [((255, 255, 255), INK), ((33, 110, 210), (255, 255, 255))]
    x = width - 40
    boxes = []
    for label, (face, ink) in zip(reversed(buttons), reversed(styles)):
        w = _text_width(label, fnt) + 60
        boxes.append(((x - w, y0, x, y0 + 70), label, face, ink))
        x -= w + 30
    for box, label, face, ink in boxes:
        draw.rounded_rectangle(box, radius=10, fill=face, outline=(160, 165, 175), width=2)
        draw.text(((box[0] + box[2]) // 2, (box[1] + box[3]) // 2), label, font=fnt,
                  fill=ink, anchor="mm")
    return img


def render_sign(spec: dict[str, Any]) -> Image.Image:
    """A light panel with large centred text, with a soft shadow, on a photo crop."""
    size = (800, 600)
    img = photo_crop(spec["photo"], spec["box"], size)
    fnt = font(spec["font"], spec["size"])
    pitch = _line_pitch(spec["size"])
    pad = 36
    text_w = max(_text_width(line, fnt) for line in spec["lines"])
    panel_w = text_w + 2 * pad
    panel_h = pitch * len(spec["lines"]) + 2 * pad - (pitch - spec["size"])
    if panel_w > size[0] - 40:
        raise ValueError(f"{spec['path']}: sign text too wide")
    cx, cy = round(spec["at"][0] * size[0]), round(spec["at"][1] * size[1])
    left = min(max(cx - panel_w // 2, 20), size[0] - 20 - panel_w)
    top = min(max(cy - panel_h // 2, 20), size[1] - 20 - panel_h)
    panel = (left, top, left + panel_w, top + panel_h)
    # shadow: a blurred dark rectangle offset down-right
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).rectangle([c + 10 for c in panel], fill=140)
    shadow = shadow.filter(ImageFilter.GaussianBlur(8))
    img = Image.composite(Image.new("RGB", size, (0, 0, 0)), img, shadow)
    draw = ImageDraw.Draw(img)
    draw.rectangle(panel, fill=spec["panel"], outline=spec["ink"], width=6)
    for i, line in enumerate(spec["lines"]):
        y = top + pad + i * pitch
        draw.text((left + panel_w // 2, y), line, font=fnt, fill=spec["ink"], anchor="mt")
    return img


TEXT_RENDERERS: dict[str, Callable[[dict[str, Any]], Image.Image]] = {
    "paragraph": render_paragraph,
    "receipt": render_receipt,
    "screen": render_screen,
    "sign": render_sign,
}

# --------------------------------------------------------------------------- #
# Images without text
# --------------------------------------------------------------------------- #


def _rng(index: int) -> np.random.Generator:
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

# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #


def encode_image(img: Image.Image, suffix: str) -> bytes:
    """Encode without metadata; the format follows the (case-insensitive) suffix."""
    img = _strip(img)
    buffer = io.BytesIO()
    suffix = suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        img.save(buffer, "JPEG", quality=JPEG_QUALITY)
    elif suffix == ".png":
        img.save(buffer, "PNG")
    elif suffix == ".webp":
        img.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
    else:
        raise ValueError(f"unsupported image suffix {suffix!r}")
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    with atomic_open(path, "wb", durable=False) as handle:
        handle.write(data)


def _record(category: str, source: str, **overrides: Any) -> dict[str, Any]:
    record = {"category": category, "lines": [], "clean": False, "rotation": 0,
              "language": None, "objects": [], "has_text": False, "source": source}
    record.update(overrides)
    return record


def _photo_entries() -> list[tuple[str, Image.Image, dict[str, Any]]]:
    entries = []
    for spec in PHOTOS:
        record = _record("photo", source_label(spec["source"]), objects=list(spec["objects"]),
                         has_text=spec.get("has_text", False), language=spec.get("language"))
        entries.append((spec["path"], load_source(spec["source"]), record))
    return entries


def _text_entries() -> list[tuple[str, Image.Image, dict[str, Any]]]:
    entries = []
    for spec in TEXT_IMAGES:
        img = TEXT_RENDERERS[spec["kind"]](spec)
        font_name = FONT_FILES[spec["font"]]
        if spec["kind"] == "sign":
            source = f"generated: {font_name} sign on a crop of {source_label(spec['photo'])}"
        else:
            source = f"generated: {font_name} {spec['kind']}"
        record = _record("text", source, lines=list(spec["lines"]), has_text=True,
                         clean=spec.get("clean", False), rotation=spec.get("rotation", 0),
                         language=spec.get("language", "en"))
        entries.append((spec["path"], img, record))
    return entries


def _notext_entries() -> list[tuple[str, Image.Image, dict[str, Any]]]:
    entries = []
    for index, spec in enumerate(NOTEXT_IMAGES):
        img = NOTEXT_RENDERERS[spec["kind"]](spec, _rng(index))
        if spec["kind"] == "crop":
            source = f"crop of {source_label(spec['photo'])}"
        else:
            source = f"generated: {spec['kind']}"
        record = _record("notext", source, objects=list(spec.get("objects", [])))
        entries.append((spec["path"], img, record))
    return entries


CREDITS = """\
# Credits for the shardlens demo images

The generator is `shardlens/demo.py`. Nothing is downloaded: all pixels come
from files that installed Python packages ship, or are drawn by the generator.

## Photos shipped by scikit-image (`skimage/data`)

Descriptions and licences as stated in the `skimage.data` docstrings.

- `astronaut.png` - astronaut Eileen Collins, from the NASA Great Images
  database (https://flic.kr/p/r9qvLn). No known copyright restrictions,
  released into the public domain.
- `camera.png` - a man with a tripod camera. CC0 by the photographer
  (Lav Varshney).
- `chelsea.png` - Chelsea the cat. CC0 by the photographer (Stefan van der Walt).
- `coffee.png` - coffee cup, courtesy of Pikolo Espresso Bar. CC0 by the
  photographer (Rachel Michetti).
- `motorcycle_left.png` - left view of the Middlebury 2014 stereo benchmark
  (Nera Nesic, Porter Westling, Xi Wang, York Kitajima, Greg Krathwohl and
  Daniel Scharstein, Middlebury College), down-sampled by scikit-image
  (the docstring states no licence).
- `rocket.jpg` - launch of DSCOVR on Falcon 9, photo by SpaceX
  (https://www.flickr.com/photos/spacexphotos/16511594820/), released into the
  public domain.
- `page.png` - a scanned printed page, part of the scikit-image sample data
  (the docstring states no licence; scikit-image itself is BSD-3-Clause).

## Photo shipped by matplotlib (`mpl-data/sample_data`)

- `grace_hopper.jpg` - portrait of Rear Admiral Grace M. Hopper, U.S. Navy;
  the file's embedded comment gives its source as
  http://commons.wikimedia.org/wiki/File:Grace_Hopper.jpg (an official U.S.
  Navy photograph, in the public domain as a work of the U.S. federal government).

## Photos shipped by scikit-learn (`sklearn/datasets/images`)

Both are licensed under Creative Commons Attribution 2.0
(https://creativecommons.org/licenses/by/2.0/). Attribution as given in
scikit-learn's `datasets/images/README.txt`, both retrieved 21 August 2011 by
Robert Layton:

- `china.jpg` - "Some rights reserved by danielbuechele"
  (https://www.flickr.com/photos/danielbuechele/,
  https://www.flickr.com/photos/danielbuechele/6061409035/).
- `flower.jpg` - "Some rights reserved by danielbuechele" per the README, whose
  links point to the Flickr user vultilion
  (https://www.flickr.com/photos/vultilion/,
  https://www.flickr.com/photos/vultilion/6056698931/).

The images under `photos/` are these files decoded and re-encoded (PNG, or
JPEG at quality 90) without metadata; `text/signs/` and some `notext/` images
use cropped and resized parts of them (CC BY 2.0 requires keeping this credit with
any image derived from `china.jpg` or `flower.jpg`).

## Fonts

Text is rendered with the DejaVu fonts (DejaVuSans, DejaVuSans-Bold,
DejaVuSerif, DejaVuSansMono) shipped by matplotlib in `mpl-data/fonts/ttf`;
see `LICENSE_DEJAVU` there (Bitstream Vera licence, with DejaVu changes in the
public domain).

## Generated images

Gradients, shapes, noise, the solid colour and all text layouts are drawn by
`shardlens/demo.py` from fixed random seeds and belong to the shardlens project.
"""


def generate_demo(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Write the demo collection into ``out_dir`` and return its ground truth.

    Creates ``out_dir`` if needed and overwrites files written by an earlier
    run. Output bytes depend only on the installed package versions.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ground_truth: dict[str, dict[str, Any]] = {}
    for relative, img, record in _photo_entries() + _text_entries() + _notext_entries():
        if relative in ground_truth:
            raise ValueError(f"duplicate demo path {relative}")
        write_atomic(out / relative, encode_image(img, Path(relative).suffix))
        ground_truth[relative] = record
    ground_truth = dict(sorted(ground_truth.items()))
    text = json.dumps(ground_truth, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    write_atomic(out / "ground_truth.json", text.encode("utf-8"))
    write_atomic(out / "CREDITS.md", CREDITS.encode("utf-8"))
    return ground_truth


def run_demo_images(out_dir: str | Path) -> dict:
    """The workflow's demo_images job: :func:`generate_demo`, then the job's JSON summary line."""
    from .jobs import JobSummary

    summary = JobSummary(shard="all", stage="demo_images")
    truth = generate_demo(out_dir)
    summary.images = summary.ok = summary.records = len(truth)
    return summary.finish()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the shardlens demo image collection.")
    parser.add_argument("out_dir", type=Path, help="output directory (created if missing)")
    args = parser.parse_args(argv)
    ground_truth = generate_demo(args.out_dir)
    counts: dict[str, int] = {}
    for record in ground_truth.values():
        counts[record["category"]] = counts.get(record["category"], 0) + 1
    summary = ", ".join(f"{n} {category}" for category, n in sorted(counts.items()))
    print(f"wrote {len(ground_truth)} images ({summary}) to {args.out_dir}")


if __name__ == "__main__":
    main()
