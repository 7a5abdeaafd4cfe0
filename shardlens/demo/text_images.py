"""Renderers of the generated images with text (``data/text_images.yaml``): each takes an
image's table entry and returns the image."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .sources import font, photo_crop

INK = (20, 20, 24)  # near-black text colour for clean images
PAPER = (255, 255, 255)


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
        transposes = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
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
        draw.text(((box[0] + box[2]) // 2, (box[1] + box[3]) // 2), label, font=fnt, fill=ink, anchor="mm")
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
