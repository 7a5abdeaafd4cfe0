"""Starting the review dashboard: ``streamlit run app.py`` with the catalog, the review store and
the images root as arguments, bound to 127.0.0.1 unless told otherwise.

This module does not import Streamlit (the ``ui`` extra), so the command line works without it
and says how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

APP = Path(__file__).resolve().with_name("app.py")

# Flags for Debian's chromium run headless as root (tests, benchmark, screenshots); the
# profile (--user-data-dir) is a fresh temporary folder each time, given by the caller.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class DashboardError(RuntimeError):
    """The dashboard cannot start as asked; the message says why and what to do."""


def guess_images_root(db: str | Path) -> Path | None:
    """The images folder of the workflow run that built ``db``: ``images:`` of
    ``config/config.yaml`` in the run's folder (the catalog's grandparent, ``results/..``),
    relative to that folder; None when there is no such config or folder."""
    workdir = Path(db).resolve().parent.parent
    config = workdir / "config" / "config.yaml"
    root = None
    if config.is_file():
        try:
            root = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("images")
        except yaml.YAMLError:
            root = None
    if root is None and (workdir / "resources" / "demo").is_dir():
        root = "resources/demo"
    if not root:
        return None
    path = Path(str(root)).expanduser()
    path = path if path.is_absolute() else workdir / path
    return path if path.is_dir() else None


def dashboard_command(
    db: str | Path,
    reviews: str | Path,
    host: str = "127.0.0.1",
    port: int = 8501,
    headless: bool = True,
    images: str | Path | None = None,
    thumbnails: str | Path | None = None,
) -> list[str]:
    """The ``python -m streamlit run`` command line for the app."""
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host,
        "--server.port", str(int(port)),
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--client.toolbarMode", "minimal",
        "--theme.base", "light",
        "--",
        "--db", str(Path(db).resolve()),
        "--reviews", str(Path(reviews).resolve()),
    ]  # fmt: skip
    if images is not None:
        cmd += ["--images", str(Path(images).resolve())]
    if thumbnails is not None:
        cmd += ["--thumbnails", str(Path(thumbnails).resolve())]
    return cmd


def check_streamlit() -> None:
    if importlib.util.find_spec("streamlit") is None:
        raise DashboardError("the dashboard needs Streamlit: pip install -e '.[ui]' (or the pinned streamlit from pyproject.toml)")


def run_dashboard(
    db: str | Path,
    reviews: str | Path,
    host: str = "127.0.0.1",
    port: int = 8501,
    headless: bool = True,
    images: str | Path | None = None,
    thumbnails: str | Path | None = None,
) -> int:
    """Run the dashboard in the foreground until it is stopped (Ctrl-C); return its exit code."""
    check_streamlit()
    if not Path(db).exists():
        raise DashboardError(f"catalog {db} does not exist: run `snakemake` first")
    cmd = dashboard_command(db, reviews, host, port, headless, images, thumbnails)
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    previous = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM: stop the server too
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the server as well (same process group)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return 130
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
