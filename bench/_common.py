"""What every benchmark script shares: the machine line (host, CPU, cores, memory, load average,
git commit), waiting for a quiet machine, appending a table to BENCHMARKS.md, and the generated
image set (rendered text + photo crops, deterministic).

Not a test helper: the scripts in bench/ print markdown tables; nothing here asserts anything.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# bench/run_all.sh runs the scripts from a snapshot of HEAD (so edits to the working tree during a
# run cannot change what is measured); these two point back at the real checkout.
BENCHMARKS = Path(os.environ.get("BENCHMARKS_MD", REPO / "BENCHMARKS.md"))
PYTHON = sys.executable


def log(message: str) -> None:
    """Progress on stderr, time-stamped, so stdout stays the table."""
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def fmt_load(load: tuple[float, float, float] | None = None) -> str:
    one, five, fifteen = load or load_average()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def wait_for_quiet(max_load: float, max_wait_s: float) -> tuple[float, float, float]:
    """Poll the 1-minute load average until it is below ``max_load`` (or ``max_wait_s`` passed)."""
    start = time.monotonic()
    load = load_average()
    if max_load <= 0:
        return load
    while load[0] >= max_load and time.monotonic() - start < max_wait_s:
        log(f"load average {fmt_load(load)} >= {max_load}: waiting (up to {max_wait_s - (time.monotonic() - start):.0f} s more)")
        time.sleep(20)
        load = load_average()
    if load[0] >= max_load:
        log(f"load average still {fmt_load(load)} after {max_wait_s:.0f} s: measuring anyway (noted in the table)")
    return load


def git_commit() -> str:
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def machine_line(load_before: tuple[float, float, float], load_after: tuple[float, float, float] | None = None) -> str:
    after = f"; after: {fmt_load(load_after)}" if load_after else ""
    return (
        f"Machine: {platform.node()}, {cpu_model()}, {os.cpu_count()} cores, {memory_gib():.0f} GiB, "
        f"Python {platform.python_version()}, no GPU. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Commit: `{git_commit()}`. Load average (1/5/15 min) before: {fmt_load(load_before)}{after}."
    )


def add_common_args(parser) -> None:
    parser.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait until the 1-min load average is below this (0: do not wait)")
    parser.add_argument("--max-wait", type=float, default=900, help="seconds to wait for the load to fall before measuring anyway")


def emit(title: str, command: str, load_before, body_lines: list[str], notes: list[str] | None = None, append: bool = False) -> str:
    """Print the section (title, command, machine line, table, notes) and maybe append it."""
    lines = [f"### {title}", "", f"`{command}`", "", machine_line(load_before, load_average()), "", *body_lines]
    if notes:
        lines += [""] + notes
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if append:
        with BENCHMARKS.open("a", encoding="utf-8") as handle:
            handle.write("\n" + text)
        log(f"appended to {BENCHMARKS}")
    return text


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:])


# --------------------------------------------------------------------------------------------
# The generated image set
# --------------------------------------------------------------------------------------------

PHOTO_SOURCES = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "camera",
    "coins",
    "moon",
    "retina",
    "colorwheel",
    "brick",
    "grass",
    "gravel",
    "cell",
)
WORDS = (
    "open", "hours", "exit", "sale", "today", "parking", "station", "coffee", "bakery", "market", "hotel",
    "pharmacy", "bank", "museum", "library", "school", "north", "south", "main", "street", "platform",
    "entrance", "welcome", "closed", "monday", "friday", "price", "total", "invoice", "order", "number",
    "garden", "river", "bridge", "tower", "city", "centre", "free", "wifi", "menu", "lunch", "dinner",
)  # fmt: skip


def _font(size: int, bold: bool = False):
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


_PHOTO_CACHE: dict = {}


def _photo(name: str):
    import numpy as np
    from skimage import data

    if name not in _PHOTO_CACHE:
        arr = getattr(data, name)()
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=2)
        _PHOTO_CACHE[name] = arr[:, :, :3].astype("uint8")
    return _PHOTO_CACHE[name]


def photo_crop(rng, size: tuple[int, int]):
    """A random crop of a scikit-image photo, resized to ``size`` (w, h)."""
    from PIL import Image

    arr = _photo(PHOTO_SOURCES[int(rng.integers(len(PHOTO_SOURCES)))])
    h, w = arr.shape[:2]
    cw = int(rng.integers(max(32, w // 2), w + 1))
    ch = int(rng.integers(max(32, h // 2), h + 1))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    image = Image.fromarray(arr[y : y + ch, x : x + cw]).resize(size)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def text_lines(rng, n: int) -> list[str]:
    lines = []
    for _ in range(n):
        k = int(rng.integers(2, 4))
        words = [WORDS[int(i)] for i in rng.choice(len(WORDS), size=k, replace=False)]
        line = " ".join(words)
        if rng.random() < 0.3:
            line += f" {int(rng.integers(1, 999))}"
        lines.append(line.upper() if rng.random() < 0.4 else line.capitalize())
    return lines


def text_image(rng, size: tuple[int, int]):
    """(image, lines): dark text on a light page, light text on a dark sign, or a text banner
    over a photo crop."""
    from PIL import Image, ImageDraw

    w, h = size
    n = int(rng.integers(1, 4))
    lines = text_lines(rng, n)
    style = int(rng.integers(3))
    font_px = int(rng.integers(28, 44))
    fnt = _font(font_px, bold=style == 1)
    pitch = int(font_px * 1.5)
    if style == 2:
        image = photo_crop(rng, size)
    else:
        bg = tuple(int(v) for v in (rng.integers(215, 256, 3) if style == 0 else rng.integers(0, 70, 3)))
        image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    width = max(draw.textlength(line, font=fnt) for line in lines)
    x0 = int(rng.integers(16, max(17, int(w - width - 16))))
    y0 = int(rng.integers(16, max(17, h - pitch * n - 16)))
    if style == 2:  # a banner so the text is readable on any photo
        draw.rectangle([x0 - 12, y0 - 10, x0 + width + 12, y0 + pitch * n + 4], fill=(250, 250, 245))
    ink = (20, 20, 20) if style != 1 else (250, 250, 250)
    for i, line in enumerate(lines):
        draw.text((x0, y0 + i * pitch), line, font=fnt, fill=ink)
    return image, lines


def generate_images(out_dir: Path, n: int, text_fraction: float = 0.5, seed: int = 0, size: tuple[int, int] = (640, 480)) -> dict[str, dict]:
    """``n`` images (PNG for text, JPEG for photos) under ``out_dir``, the same for a given seed.

    Returns path -> {"has_text": bool, "lines": [...]} (the ground truth of the text images).
    """
    import numpy as np

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    n_text = int(round(n * text_fraction))
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    for k in range(n):
        i = int(order[k])
        item_rng = np.random.default_rng([seed, i])
        sub = f"batch{i % 10:02d}"
        (out_dir / sub).mkdir(exist_ok=True)
        if i < n_text:
            image, lines = text_image(item_rng, size)
            rel = f"{sub}/text_{i:05d}.png"
            image.save(out_dir / rel, optimize=False)
            truth[rel] = {"has_text": True, "lines": lines}
        else:
            rel = f"{sub}/photo_{i:05d}.jpg"
            photo_crop(item_rng, size).save(out_dir / rel, quality=90)
            truth[rel] = {"has_text": False, "lines": []}
    return truth


def write_workdir_config(workdir: Path, images: Path, **extra) -> Path:
    import yaml

    (workdir / "config").mkdir(parents=True, exist_ok=True)
    path = workdir / "config" / "config.yaml"
    path.write_text(yaml.safe_dump({"images": str(images), **extra}, sort_keys=True))
    return path


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    return [PYTHON, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]


def run_snakemake(workdir: Path, *args: str, timeout: float | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Run the real workflow; return (wall seconds, process). Raises with the log tail on failure."""
    cmd = snakemake_cmd(workdir, *args)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=timeout)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return elapsed, proc


def planned_jobs(text: str) -> dict[str, int]:
    """Jobs per rule from snakemake's 'Job stats' table (empty when nothing is to be done)."""
    import re

    if "Job stats:" not in text:
        return {}
    counts = {}
    for line in text.split("Job stats:", 1)[1].splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
        elif counts and not line.strip():
            break
    return counts
