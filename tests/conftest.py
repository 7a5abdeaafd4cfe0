"""Shared fixtures: the repository, a tiny real image set, and running the real workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]


def skip_unless_available(requirement: str, reason: str) -> None:
    """Skip a test whose ``requirement`` (SLURM, BROWSER, PADDLE, LABELSTUDIO) is missing here, with the
    reason; where ``SHARDLENS_REQUIRE_<REQUIREMENT>=1`` (CI) the missing requirement fails it."""
    if os.environ.get(f"SHARDLENS_REQUIRE_{requirement}") == "1":
        pytest.fail(f"SHARDLENS_REQUIRE_{requirement}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# Skips CI allows: SHARDLENS_ALLOWED_SKIPS (set by .ci/run) lists their test ids, separated by
# spaces; with it set, any other skip fails the run. Without it (a developer's machine), skips
# are just reported.
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped:
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus) -> None:
    allowed = os.environ.get("SHARDLENS_ALLOWED_SKIPS")
    if allowed is None:
        return
    unexpected = sorted(set(_SKIPPED) - set(allowed.split()))
    if unexpected:
        print(f"\nSHARDLENS_ALLOWED_SKIPS: {len(unexpected)} skip(s) not allowed in CI: {', '.join(unexpected)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


FONT = Path(__import__("matplotlib").get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def text_image(lines: list[str], size=(800, 300), font_px: int = 40, background=(245, 245, 240)) -> Image.Image:
    font = ImageFont.truetype(str(FONT), font_px)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * int(font_px * 1.6)), line, font=font, fill=(15, 15, 15))
    return image


def smooth_image(seed: int, size=(640, 480)) -> Image.Image:
    """A smooth colour gradient with no text."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]].astype(np.float64)
    c = rng.uniform(0.2, 0.8, size=(3, 3))
    rgb = np.stack([c[i, 0] * 255 * x / size[0] * 0.6 + c[i, 1] * 255 * y / size[1] * 0.4 + c[i, 2] * 20 for i in range(3)], axis=2)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


@pytest.fixture()
def tiny_images(tmp_path: Path) -> Path:
    """Seven files: text images with known lines, photos, a duplicate and a broken file."""
    from skimage import data

    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    text_image(["OPEN 24 HOURS"]).save(root / "open.png")
    text_image(["Main Street", "Parking"]).save(root / "sub" / "street.png")
    Image.fromarray(data.chelsea()).save(root / "cat.jpg", quality=90)
    Image.fromarray(data.chelsea()).save(root / "sub" / "cat_copy.jpg", quality=90)
    smooth_image(1).save(root / "gradient.jpg", quality=90)
    Image.fromarray(data.coffee()).save(root / "sub" / "coffee.JPG", quality=90)
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    return root


def write_config(workdir: Path, **overrides) -> Path:
    """A workdir with config/config.yaml, as the snakemake-workflows .test folders have."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    path = workdir / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(overrides, sort_keys=True))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    """Run the real workflow with the repository's Snakefile in ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def shardlens_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """The ``shardlens`` command line in a fresh process, run in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "shardlens.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """A command's refusal as the CLI promises it: exit 2, one ``error:`` line naming ``needles``,
    no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: ")
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs per rule that ``snakemake -n`` plans (parsed from its 'Job stats' table)."""
    proc = snakemake(workdir, "-n", *args)
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The embedded demo set, generated once per test session."""
    from shardlens.demo.generate import generate_demo

    out = tmp_path_factory.mktemp("demo") / "demo"
    generate_demo(out)
    return out


@pytest.fixture(scope="session")
def small_catalog(tmp_path_factory) -> Path:
    """A small real catalog built by the stage functions (tests/small_catalog.py), shared by the
    export tests: read-only, a test that records reviews copies its run folder first."""
    from small_catalog import build_small_catalog

    return build_small_catalog(tmp_path_factory.mktemp("small_catalog") / "run")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """One real run of the README's demo with the repository's default config, shared by every test
    that only reads its results (a test that writes copies what it needs first)."""
    workdir = tmp_path_factory.mktemp("demo_run")
    shutil.copytree(REPO / "config", workdir / "config")
    snakemake(workdir, "--cores", "2")
    return workdir


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def env_without_display() -> dict:
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return env
