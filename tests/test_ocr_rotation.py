"""Turned text, with the real models: what the text-line orientation classifier (``use_cls``) does.

Both engines detect boxes in the image as given and crop each box; a crop at least 1.5 times as
tall as wide is turned by 90 degrees counter-clockwise (``np.rot90``) before recognition. Then the
orientation classifier (0 or 180 degrees) flips upside-down crops when ``use_cls`` is on. So:

* 180 degrees: every crop is upside down; read only with the classifier.
* 90 degrees counter-clockwise (PIL ``ROTATE_90``, text runs bottom to top): the detector finds
  tall boxes, the 90-degree turn of the crop makes it upside down: read only with the classifier.
* 270 degrees (``ROTATE_270``, text runs top to bottom): the turned crop is upright: read with or
  without the classifier.

Lines come back sorted top-to-bottom in the image as given, so on a 180-degree image they come
in reverse reading order; the CERs here are therefore order-insensitive (each truth line against
the engine line that matches it best). ``bench/ocr_accuracy.py`` measures all this on many images.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from shardlens.evaluation import cer, edit_distance, normalise

from conftest import skip_unless_available

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
LINES = ["Main Street Station", "Open daily from 9 to 5"]


def render(lines: list[str], transpose: Image.Transpose | None = None, size: int = 32) -> np.ndarray:
    font = ImageFont.truetype(str(FONT), size)
    pitch = int(size * 1.6)
    width = 80 + max(int(font.getlength(line)) for line in lines)
    image = Image.new("RGB", (width, 60 + pitch * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 30 + i * pitch), line, fill="black", font=font)
    if transpose is not None:
        image = image.transpose(transpose)
    return np.ascontiguousarray(np.asarray(image))


def unordered_cer(texts: list[str], truth: list[str]) -> float:
    """Greedy one-to-one line matching (best pair first); unmatched lines cost their length."""
    pred = [normalise(t) for t in texts if normalise(t)]
    want = [normalise(t) for t in truth]
    pairs = sorted((edit_distance(p, t) / len(t), edit_distance(p, t), i, j) for i, t in enumerate(want) for j, p in enumerate(pred))
    used_t, used_p, edits = set(), set(), 0
    for _, d, i, j in pairs:
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
            edits += d
    edits += sum(len(t) for i, t in enumerate(want) if i not in used_t)
    edits += sum(len(p) for j, p in enumerate(pred) if j not in used_p)
    return edits / sum(len(t) for t in want)


UPRIGHT = render(LINES)
TURNED_180 = render(LINES, Image.Transpose.ROTATE_180)
TURNED_90 = render(LINES, Image.Transpose.ROTATE_90)  # counter-clockwise: text runs bottom to top
TURNED_270 = render(LINES, Image.Transpose.ROTATE_270)  # clockwise: text runs top to bottom


def test_unordered_cer_ignores_line_order():
    assert unordered_cer(list(reversed(LINES)), LINES) == 0.0
    assert cer(" ".join(reversed(LINES)), " ".join(LINES)) > 0.5  # what a joined CER would charge
    assert unordered_cer([LINES[0]], LINES) == pytest.approx(len(LINES[1]) / sum(map(len, LINES)))
    assert unordered_cer([*LINES, "extra"], LINES) == pytest.approx(5 / sum(map(len, LINES)))


# --- RapidOCR -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rapid():
    from shardlens.models.ocr_engines import make_ocr_engine
    from shardlens.options import OCROptions

    return {cls: make_ocr_engine(OCROptions.from_values({"engine": "rapidocr", "use_cls": cls}), threads=2) for cls in (True, False)}


def test_rapidocr_upright_reference(rapid):
    for cls in (True, False):
        lines = rapid[cls].recognize(UPRIGHT)
        assert [line.text for line in lines] == LINES, cls


def test_rapidocr_reads_180_degrees_with_the_orientation_classifier(rapid):
    lines = rapid[True].recognize(TURNED_180)
    texts = [line.text for line in lines]
    assert unordered_cer(texts, LINES) <= 0.05, texts
    # sorted top-to-bottom in the turned image: the last line first
    assert len(texts) == 2 and cer(texts[0], LINES[1]) <= 0.05 and cer(texts[1], LINES[0]) <= 0.05, texts
    assert cer(" ".join(texts), " ".join(LINES)) > 0.5


def test_rapidocr_without_the_classifier_misreads_180_degrees(rapid):
    with_cls = unordered_cer([line.text for line in rapid[True].recognize(TURNED_180)], LINES)
    texts = [line.text for line in rapid[False].recognize(TURNED_180)]
    without_cls = unordered_cer(texts, LINES)
    # measured: about 0.6-0.9 (upside-down glyphs read as other letters or dropped)
    assert without_cls >= 0.3, texts
    assert without_cls >= with_cls + 0.25, (with_cls, without_cls, texts)


def test_rapidocr_90_degrees_tall_boxes_read_only_with_the_classifier(rapid):
    lines = rapid[True].recognize(TURNED_90)
    # the detector finds one vertical box per line
    assert len(lines) == 2, lines
    for line in lines:
        x0, y0, x1, y1 = line.bbox
        assert (y1 - y0) > 3 * (x1 - x0), line
    assert unordered_cer([line.text for line in lines], LINES) <= 0.05, lines
    # the recogniser turns tall crops 90 degrees counter-clockwise: upside down for this direction
    texts = [line.text for line in rapid[False].recognize(TURNED_90)]
    assert unordered_cer(texts, LINES) >= 0.3, texts


def test_rapidocr_270_degrees_reads_without_the_classifier(rapid):
    for cls in (True, False):
        lines = rapid[cls].recognize(TURNED_270)
        assert all((line.bbox[3] - line.bbox[1]) > 3 * (line.bbox[2] - line.bbox[0]) for line in lines), lines
        assert unordered_cer([line.text for line in lines], LINES) <= 0.05, (cls, lines)


# --- PaddleOCR (its own venv) -------------------------------------------------------------


@pytest.fixture(scope="module")
def paddle():
    from shardlens.models.paddle_models import paddle_venv

    python = paddle_venv() / "bin" / "python"
    if not python.exists():
        skip_unless_available("PADDLE", f"paddle venv absent ({python} missing): create it with `make paddle-venv` to run the paddleocr parts")
    from shardlens.models.ocr_engines import make_ocr_engine
    from shardlens.options import OCROptions

    engines = {cls: make_ocr_engine(OCROptions.from_values({"engine": "paddleocr", "use_cls": cls}), threads=2) for cls in (True, False)}
    yield engines
    for engine in engines.values():
        getattr(engine, "close", lambda: None)()


def test_paddleocr_reads_180_and_90_degrees_only_with_the_classifier(paddle):
    for image in (TURNED_180, TURNED_90):
        with_cls = [line.text for line in paddle[True].recognize(image)]
        without_cls = [line.text for line in paddle[False].recognize(image)]
        assert unordered_cer(with_cls, LINES) <= 0.05, with_cls
        assert unordered_cer(without_cls, LINES) >= 0.3, without_cls


def test_paddleocr_reads_270_degrees_without_the_classifier(paddle):
    texts = [line.text for line in paddle[False].recognize(TURNED_270)]
    assert unordered_cer(texts, LINES) <= 0.05, texts
