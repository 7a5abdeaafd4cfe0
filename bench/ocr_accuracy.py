"""OCR accuracy harness: character error rate (CER) and latency of each OCR engine on generated
text images with exact ground truth, per category (font, size, background, rotation, language).

The image set is deterministic (fixed seeds; the same PNG bytes for a given ``--seed`` and font
files). Design: one factor at a time around a baseline (DejaVuSans, 28 px, white page, upright,
English). For each category every level gets ``--per-level`` images that differ from the baseline
in that factor only, so a row of a category table can be compared with the baseline row (shared by
all categories: the same images). A further ``--mixed`` images draw every factor at random (all
levels at once: small oblique text over a photo, turned 10 degrees...); they are not in the
category tables, only in the overall figures.

* fonts: DejaVu Sans, Sans Bold, Sans Oblique, Serif, Serif Italic, Sans Mono (matplotlib's copies,
  ``matplotlib.get_data_path()/fonts/ttf``);
* sizes: 12, 18, 28, 44, 64 px (font size; cap height is about 0.73 of it);
* backgrounds: white page, light colour with dark coloured ink, dark with light text, a photo crop
  from scikit-image's sample images with a light text panel;
* rotations: 0, 90, 180, 270 degrees (exact transposes) and +10 / -10 degrees (counter-clockwise
  / clockwise, bicubic, canvas grown);
* languages: en and seven Latin-script languages with their diacritics (fr, de, es, pt, pl, cs,
  it), and Chinese (simplified) rendered with WenQuanYi Micro Hei from the Debian package
  ``fonts-wqy-microhei`` (``apt-get install fonts-wqy-microhei``; Noto Sans CJK from
  ``fonts-noto-cjk`` or any ``fc-list :lang=zh`` font works too). Without such a font the
  Chinese level is skipped with a message, and the rest runs.

Two CERs, both edit distance over the length of the normalised truth (NFC, whitespace collapsed,
case kept; the truth is the image's lines joined with a space in reading order):

* **joined**: the engine's lines joined in the order the engine returns them, against the truth
  joined in reading order. Engines sort their boxes top-to-bottom, left-to-right *in the image as
  given*; on a turned image that is not the reading order (at 180 degrees the last line comes
  first; at 90/270 the lines are columns, sorted by their top edge, then x), so this CER charges
  the line order, which a caller that does not know the rotation cannot fix either.
* **unordered**: order-insensitive. Each engine line goes, greedily and on its own, to the truth
  line it matches best as a substring (edit distance per engine character); the pieces a truth
  line got are joined in their best order (so a line the detector cut into two boxes is not
  charged for the cut), truth lines that got nothing count as deleted, and junk lines as inserted
  into the line they were matched to. It measures what was read, whatever the order.

Latency: wall time of ``engine.recognize(image)`` per image, the engines interleaved image by image
(which engine goes first alternates), after a warm-up; median and p90. The machine is shared, so
the 1-minute load average is sampled at every image and its median reported.

    python bench/ocr_accuracy.py [--engines rapidocr paddleocr] [--per-level 6] [--mixed 24]
                                 [--threads 2] [--dump DIR] [--append]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, add_common_args, command_line, emit, fmt_load, log, photo_crop, wait_for_quiet  # noqa: E402

sys.path.insert(0, str(REPO))

# --------------------------------------------------------------------------------------------
# Factors and levels
# --------------------------------------------------------------------------------------------

FONTS = {
    "Sans": "DejaVuSans.ttf",
    "Sans Bold": "DejaVuSans-Bold.ttf",
    "Sans Oblique": "DejaVuSans-Oblique.ttf",
    "Serif": "DejaVuSerif.ttf",
    "Serif Italic": "DejaVuSerif-Italic.ttf",
    "Sans Mono": "DejaVuSansMono.ttf",
}
SIZES = (12, 18, 28, 44, 64)
BACKGROUNDS = ("white", "light colour", "dark, light text", "photo + panel")
ROTATIONS = (0, 90, 180, 270, 10, -10)
LANGUAGES = ("en", "fr", "de", "es", "pt", "pl", "cs", "it", "zh")
BASELINE = {"font": "Sans", "size": 28, "background": "white", "rotation": 0, "language": "en"}
LEVELS = {"font": tuple(FONTS), "size": SIZES, "background": BACKGROUNDS, "rotation": ROTATIONS, "language": LANGUAGES}

# CJK fonts: (file, Debian package that installs it). The first one present is used.
CJK_FONTS = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "fonts-wqy-microhei"),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "fonts-noto-cjk"),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "fonts-wqy-zenhei"),
)

# Short sign/label texts, written for this harness, with each language's diacritics.
PHRASES = {
    "en": (
        "Main Street Station", "Open daily from 9 to 5", "Please keep this door closed", "Fire exit only",
        "Invoice No. 4711-B", "Total: 129.95 EUR", "Parking for customers", "Welcome to the museum",
        "Platform 3 and 4", "Fresh coffee and cake",
    ),
    "fr": (
        "Fermé le dimanche", "Entrée libre à côté", "Hôtel de la Gare", "Boulangerie pâtisserie",
        "Ouvert tous les jours à midi", "Théâtre du Châtelet", "Sortie de secours", "Crème brûlée maison",
        "Garçon, deux cafés", "Forêt de Fontainebleau",
    ),
    "de": (
        "Straße gesperrt", "Öffnungszeiten täglich", "Bäckerei Müller", "Ausgang für Fußgänger",
        "Schließfächer im Untergeschoss", "Grüße aus München", "Kein Zutritt für Unbefugte",
        "Frühstück ab sieben Uhr", "Größe und Gewicht", "Bahnhof Nürnberg",
    ),
    "es": (
        "Salida de emergencia", "Farmacia abierta mañana", "Estación de autobuses", "¿Dónde está el baño?",
        "Niños y señoras", "Panadería La Española", "Información turística", "Cerrado por vacaciones",
        "Año nuevo, vida nueva", "Próxima parada: Plaza Mayor",
    ),
    "pt": (
        "Saída de emergência", "Pão quente todos os dias", "Estação de comboios", "Informações turísticas",
        "Não fumar", "Farmácia São João", "Atenção: piso molhado", "Coração de Lisboa",
        "Promoção até sábado", "Avenida da Liberdade",
    ),
    "pl": (
        "Wyjście ewakuacyjne", "Zażółć gęślą jaźń", "Dworzec główny", "Uwaga: śliska nawierzchnia",
        "Sklep spożywczy", "Łódź Fabryczna", "Zakaz palenia", "Dzień dobry, proszę wejść",
        "Apteka całodobowa", "Przystanek tramwajowy",
    ),
    "cs": (
        "Příliš žluťoučký kůň", "Východ do ulice", "Nádraží Praha hlavní", "Zákaz kouření",
        "Otevřeno každý den", "Pozor, schod", "Lékárna U Anděla", "Čerstvé pečivo",
        "Vstup zdarma", "Úřední hodiny",
    ),
    "it": (
        "Uscita di sicurezza", "Città del Vaticano", "Caffè e pasticceria", "Chiuso il lunedì",
        "Perché no? Andiamo là", "Più economico", "Stazione centrale", "Vietato fumare",
        "Farmacia comunale", "Università degli Studi",
    ),
    "zh": (
        "欢迎光临", "安全出口", "北京火车站", "营业时间早上九点", "禁止吸烟", "今日特价八折",
        "请勿触摸展品", "中国人民银行", "地铁站入口", "小心地滑",
    ),
}  # fmt: skip


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def find_cjk_font() -> tuple[Path, str] | None:
    """(font file, where it comes from), or None when no Chinese-capable font is installed."""
    for path, package in CJK_FONTS:
        if Path(path).is_file():
            return Path(path), f"Debian package {package}"
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        files = sorted(line.split(":", 1)[0].strip() for line in out.splitlines() if line.strip())
        if files:
            return Path(files[0]), "fc-list :lang=zh"
    return None


# --------------------------------------------------------------------------------------------
# The image set
# --------------------------------------------------------------------------------------------


@dataclass
class Sample:
    key: str  # stable name, e.g. "size=44#3" or "mixed#7"
    group: str  # the factor varied ("baseline", "font", ..., or "mixed")
    factors: dict
    lines: list[str]
    image: np.ndarray = field(repr=False)

    @property
    def truth(self) -> str:
        return " ".join(self.lines)


_FONT_CACHE: dict = {}


def load_font(factors: dict, cjk: Path | None):
    from PIL import ImageFont

    path = cjk if factors["language"] == "zh" else font_dir() / FONTS[factors["font"]]
    key = (str(path), factors["size"])
    if key not in _FONT_CACHE:
        _FONT_CACHE[key] = ImageFont.truetype(str(path), factors["size"], index=0)
    return _FONT_CACHE[key]


def render(factors: dict, lines: list[str], rng: np.random.Generator, cjk: Path | None) -> np.ndarray:
    """The lines drawn upright with the factors' font/size/background, then turned."""
    from PIL import Image, ImageDraw

    font = load_font(factors, cjk)
    size = factors["size"]
    pitch = int(round(size * 1.6))
    probe = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    boxes = [probe.textbbox((0, 0), line, font=font) for line in lines]
    text_w = max(b[2] for b in boxes)
    text_h = pitch * (len(lines) - 1) + max(b[3] for b in boxes)
    margin = int(rng.integers(max(16, size), max(17, 2 * size) + 1))
    w = max(320, text_w + 2 * margin + int(rng.integers(0, 80)))
    h = max(160, text_h + 2 * margin + int(rng.integers(0, 60)))
    x0 = int(rng.integers(margin, w - text_w - margin + 1))
    y0 = int(rng.integers(margin, h - text_h - margin + 1))

    background = factors["background"]
    if background == "white":
        page, ink = (255, 255, 255), (0, 0, 0)
    elif background == "light colour":
        page = tuple(int(v) for v in rng.integers(200, 246, 3))
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
    elif background == "dark, light text":
        page = tuple(int(v) for v in rng.integers(0, 70, 3))
        ink = tuple(int(v) for v in rng.integers(215, 256, 3))
    elif background == "photo + panel":
        page, ink = None, (20, 20, 20)
    else:
        raise ValueError(background)
    if page is None:
        image = photo_crop(rng, (w, h))
        draw = ImageDraw.Draw(image)
        pad = max(8, size // 2)
        draw.rectangle([x0 - pad, y0 - pad, x0 + text_w + pad, y0 + text_h + pad], fill=(248, 248, 242))
        fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(axis=0))
    else:
        image = Image.new("RGB", (w, h), page)
        draw = ImageDraw.Draw(image)
        fill = page
    for i, line in enumerate(lines):
        draw.text((x0, y0 + i * pitch), line, font=font, fill=ink)

    rotation = factors["rotation"]
    if rotation in (90, 180, 270):  # counter-clockwise, exact
        image = image.transpose({90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}[rotation])
    elif rotation:
        image = image.rotate(rotation, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(key.encode())])


def make_sample(seed: int, key: str, group: str, factors: dict, cjk: Path | None) -> Sample:
    rng = _rng(seed, key)
    phrases = PHRASES[factors["language"]]
    n = int(rng.integers(2, 4))
    lines = [phrases[int(i)] for i in rng.choice(len(phrases), size=n, replace=False)]
    return Sample(key, group, dict(factors), lines, render(factors, lines, rng, cjk))


def generate(seed: int, per_level: int, mixed: int, cjk: Path | None) -> list[Sample]:
    samples = [make_sample(seed, f"baseline#{r}", "baseline", BASELINE, cjk) for r in range(per_level)]
    for factor, levels in LEVELS.items():
        for level in levels:
            if level == BASELINE[factor] or (factor == "language" and level == "zh" and cjk is None):
                continue
            factors = {**BASELINE, factor: level}
            samples += [make_sample(seed, f"{factor}={level}#{r}", factor, factors, cjk) for r in range(per_level)]
    for r in range(mixed):
        rng = _rng(seed, f"mixed-factors#{r}")
        factors = {}
        for factor, levels in LEVELS.items():
            if factor == "language" and cjk is None:
                levels = tuple(lang for lang in levels if lang != "zh")
            factors[factor] = levels[int(rng.integers(len(levels)))]
        samples.append(make_sample(seed, f"mixed#{r}", "mixed", factors, cjk))
    return samples


def dump(samples: list[Sample], out: Path) -> None:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for s in samples:
        name = s.key.replace("=", "_").replace("#", "_").replace(" ", "").replace(",", "").replace("+", "") + ".png"
        Image.fromarray(s.image).save(out / name)
        truth[name] = {"lines": s.lines, **s.factors}
    (out / "truth.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def joined_edits(predicted: list[str], truth_lines: list[str]) -> int:
    from shardlens.evaluation import edit_distance, normalise

    return edit_distance(normalise(" ".join(predicted)), normalise(" ".join(truth_lines)))


def infix_distance(piece: str, line: str) -> int:
    """Edit distance of ``piece`` to the best-matching substring of ``line``."""
    previous = [0] * (len(line) + 1)  # free start anywhere in the line
    for i, cp in enumerate(piece, start=1):
        current = [i]
        for j, cl in enumerate(line, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (cp != cl)))
        previous = current
    return min(previous)  # free end anywhere in the line


def unordered_edits(predicted: list[str], truth_lines: list[str]) -> int:
    """Order-insensitive edits: every engine line goes (greedily, on its own) to the truth line it
    matches best as a substring; the pieces of a truth line are joined in their best order (a line
    the detector cut into two boxes is not charged); truth lines that got nothing are deletions."""
    from itertools import permutations

    from shardlens.evaluation import edit_distance, normalise

    pred = [normalise(p) for p in predicted if normalise(p)]
    truth = [normalise(t) for t in truth_lines]
    pieces: dict[int, list[str]] = {i: [] for i in range(len(truth))}
    for p in pred:
        best = min(range(len(truth)), key=lambda i: (infix_distance(p, truth[i]) / len(p), i))
        pieces[best].append(p)
    edits = 0
    for i, t in enumerate(truth):
        got = pieces[i]
        if not got:
            edits += len(t)
        elif len(got) <= 4:
            edits += min(edit_distance(" ".join(order), t) for order in permutations(got))
        else:
            edits += edit_distance(" ".join(got), t)
    return edits


def truth_chars(sample: Sample) -> int:
    from shardlens.evaluation import normalise

    return len(normalise(sample.truth))


def engine_charset(name: str) -> set[str] | None:
    """The recogniser's character dictionary (best effort; None when it cannot be read)."""
    try:
        if name == "rapidocr":
            import onnxruntime as ort

            from shardlens.models.rapid_ocr import RAPIDOCR_MODEL_FILES
            from shardlens.models.weights import rapidocr_model

            meta = ort.InferenceSession(str(rapidocr_model(RAPIDOCR_MODEL_FILES["rec"])), providers=["CPUExecutionProvider"]).get_modelmeta()
            return set(meta.custom_metadata_map["character"].split("\n")) | {" "}
        if name == "paddleocr":
            from shardlens.models.paddle_models import REC_DICT, paddle_weight_files

            return set(paddle_weight_files()[REC_DICT].read_text(encoding="utf-8").split("\n")) | {" "}
    except Exception as exc:  # noqa: BLE001 - a note in the report, not a failure
        log(f"could not read the {name} character dictionary: {exc}")
    return None


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    texts: list[str]
    seconds: float


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90)) if values else float("nan")


def cer_of(samples: list[Sample], results: dict[str, Result], kind: str) -> float:
    edits = 0
    chars = 0
    for s in samples:
        r = results[s.key]
        edits += (joined_edits if kind == "joined" else unordered_edits)(r.texts, s.lines)
        chars += truth_chars(s)
    return edits / chars if chars else float("nan")


def fmt_cer(value: float) -> str:
    return "–" if value != value else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["rapidocr", "paddleocr"])
    parser.add_argument("--per-level", type=int, default=6, help="images per level of each factor (and for the baseline)")
    parser.add_argument("--mixed", type=int, default=24, help="images with every factor drawn at random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dump", type=Path, help="also write the images and truth.json to this folder")
    parser.add_argument("--details", type=Path, help="write every image's engine output and CERs to this JSON file")
    add_common_args(parser)
    args = parser.parse_args()

    from shardlens.models.ocr_engines import make_ocr_engine
    from shardlens.options import OCROptions

    cjk = find_cjk_font()
    if cjk is None:
        log(
            "no Chinese font found (looked for "
            + ", ".join(f"{p} from {pkg}" for p, pkg in CJK_FONTS)
            + ", then fc-list :lang=zh): SKIPPING the Chinese (zh) images. Install one with `apt-get install fonts-wqy-microhei`."
        )
    else:
        log(f"Chinese font: {cjk[0]} ({cjk[1]})")
    t0 = time.perf_counter()
    samples = generate(args.seed, args.per_level, args.mixed, cjk[0] if cjk else None)
    log(f"generated {len(samples)} images in {time.perf_counter() - t0:.1f} s")
    if args.dump:
        dump(samples, args.dump)
        log(f"images and truth.json written to {args.dump}")

    engines = {}
    skipped_engines = []
    for name in args.engines:
        try:
            engine = make_ocr_engine(OCROptions.from_values({"engine": name}), threads=args.threads)
            log(f"{name}: {engine.source}; warming up")
            engine.warmup()
            engines[name] = engine
        except Exception as exc:  # noqa: BLE001 - e.g. the paddle venv is absent
            log(f"{name} unavailable, skipped: {exc}")
            skipped_engines.append(f"{name} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
    if not engines:
        sys.exit("no engine could be started")
    names = list(engines)
    # one real image each before measuring (first-call allocations at a real size)
    for name in names:
        engines[name].recognize(samples[0].image)

    load_before = wait_for_quiet(args.max_load, args.max_wait)
    results: dict[str, dict[str, Result]] = {n: {} for n in names}
    loads = []
    for k, s in enumerate(samples):
        order = names if k % 2 == 0 else names[::-1]
        for name in order:
            t = time.perf_counter()
            lines = engines[name].recognize(s.image)
            results[name][s.key] = Result([line.text for line in lines], time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
        if (k + 1) % 20 == 0 or k + 1 == len(samples):
            log(f"{k + 1}/{len(samples)} images; load {fmt_load()}")
    for engine in engines.values():
        close = getattr(engine, "close", None)
        if close:
            close()

    if args.details:
        out = []
        for s in samples:
            row = {"key": s.key, **s.factors, "truth": s.lines, "shape": list(s.image.shape[:2])}
            for name in names:
                r = results[name][s.key]
                n = truth_chars(s)
                row[name] = {
                    "lines": r.texts,
                    "seconds": round(r.seconds, 4),
                    "cer_joined": round(joined_edits(r.texts, s.lines) / n, 4),
                    "cer_unordered": round(unordered_edits(r.texts, s.lines) / n, 4),
                }
            out.append(row)
        args.details.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
        log(f"details written to {args.details}")

    # ---------------------------------------------------------------- tables
    ofat = [s for s in samples if s.group != "mixed"]
    mixed = [s for s in samples if s.group == "mixed"]
    body = [
        f"{len(samples)} generated images: {len(ofat)} one-factor-at-a-time ({args.per_level} per level, baseline DejaVu Sans 28 px, "
        f"white, upright, English, 2–3 lines each) + {len(mixed)} with every factor drawn at random. Seed {args.seed}. "
        f"`make_ocr_engine(name, threads={args.threads})`, default options; engines interleaved image by image after a warm-up. "
        f"Median 1-min load average during the run: {statistics.median(loads):.2f} (min {min(loads):.2f}, max {max(loads):.2f}).",
        "",
        "CER = edit distance / truth characters over all images of a row (case-sensitive, NFC, whitespace collapsed). "
        "**joined**: engine lines in the engine's order vs the truth in reading order; **unordered**: each engine line matched "
        "greedily to the truth line it fits best (as a substring), a truth line's pieces joined in their best order, unmatched truth lines deleted.",
        "",
        "| engine | source | CER joined, all | CER unordered, all | one-factor set (joined / unordered) | random mix (joined / unordered) | images with no text found | latency median (ms) | p90 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        res = results[name]
        secs = [res[s.key].seconds * 1000 for s in samples]
        empty = sum(1 for s in samples if not res[s.key].texts)
        body.append(
            f"| {name} | `{engines[name].source}` | **{fmt_cer(cer_of(samples, res, 'joined'))}** | **{fmt_cer(cer_of(samples, res, 'unordered'))}** | "
            f"{fmt_cer(cer_of(ofat, res, 'joined'))} / {fmt_cer(cer_of(ofat, res, 'unordered'))} | "
            f"{fmt_cer(cer_of(mixed, res, 'joined'))} / {fmt_cer(cer_of(mixed, res, 'unordered'))} | {empty}/{len(samples)} | "
            f"{statistics.median(secs):.0f} | {p90(secs):.0f} |"
        )

    charsets = {name: engine_charset(name) for name in names}
    for factor, levels in LEVELS.items():
        header = f"| {factor} | images | " + " | ".join(f"{n} joined | {n} unordered | {n} ms (median / p90)" for n in names) + " |"
        body += ["", f"**By {factor}** (other factors at the baseline)", "", header, "|---|---|" + "---|---|---|" * len(names)]
        for level in levels:
            rows = [s for s in ofat if s.factors[factor] == level and all(s.factors[f] == BASELINE[f] for f in LEVELS if f != factor)]
            if not rows:
                body.append(f"| {level} | 0 (skipped: no Chinese font) |" + " – | – | – |" * len(names))
                continue
            label = f"{level}°" if factor == "rotation" else (f"{level} px" if factor == "size" else str(level))
            if level == BASELINE[factor]:
                label += " (baseline)"
            cells = []
            for name in names:
                secs = [results[name][s.key].seconds * 1000 for s in rows]
                cells.append(
                    f"{fmt_cer(cer_of(rows, results[name], 'joined'))} | {fmt_cer(cer_of(rows, results[name], 'unordered'))} | {statistics.median(secs):.0f} / {p90(secs):.0f}"
                )
            body.append(f"| {label} | {len(rows)} | " + " | ".join(cells) + " |")
        if factor == "language" and any(charsets.values()):
            body += ["", "Truth characters missing from each recogniser's dictionary (it cannot output them; each costs at least one edit):", ""]
            for name in names:
                cs = charsets[name]
                if cs is None:
                    continue
                parts = []
                for level in levels:
                    text = "".join(PHRASES[level])
                    missing = sorted({c for c in text if c not in cs})
                    if missing:
                        parts.append(f"{level}: {''.join(missing)}")
                body.append(f"* {name} ({len(cs) - 1} characters): " + ("; ".join(parts) if parts else "none missing"))

    notes = [
        "Why two CERs: engines return lines sorted top-to-bottom, left-to-right in the frame of the image *as given*. "
        "Upright, that is the reading order and the two CERs agree (unless the detector cuts a line into boxes that are then "
        "sorted apart). At 180° the lines come out last-first; at 90°/270° every line is a column, and the columns come out "
        "in the order of their boxes' top edges (then x), which has nothing to do with reading order. So the joined CER charges "
        "the order (two swapped lines cost about twice the shorter one) even when every line is read perfectly, while the "
        "unordered CER shows what was read. The gap between the two on the rotation rows is the cost of the order alone; a "
        "caller that needs reading order on turned images must find the page orientation first (neither engine does).",
    ]
    notes.append("")
    if cjk:
        notes.append(f"Chinese rendered with {cjk[0].name} ({cjk[1]}).")
    else:
        notes.append("Chinese skipped: no CJK font (`apt-get install fonts-wqy-microhei`).")
    if skipped_engines:
        notes.append("Engines skipped: " + "; ".join(skipped_engines) + ".")
    emit("OCR accuracy: CER by font, size, background, rotation and language", command_line(), load_before, body, notes, append=args.append)


if __name__ == "__main__":
    main()
