"""Starting the review dashboard: ``streamlit run app.py`` with the catalog, the review store and
the images root as arguments, bound to 127.0.0.1 unless told otherwise.

Access: on a loopback address (127.0.0.0/8, ::1, localhost) anyone on this machine may review; on
any other address the dashboard needs a token (``--token`` or ``SHARDLENS_REVIEW_TOKEN``), and
every browser session must present it before the app shows anything. The token reaches the
Streamlit process through its environment, never its command line (which ``ps`` shows to every
user). A token only gates access; who reviewed is the name typed into the app.

This module does not import Streamlit (the ``ui`` extra), so the command line works without it
and says how to install it.
"""

from __future__ import annotations

import hmac
import importlib.util
import ipaddress
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

APP = Path(__file__).resolve().with_name("app.py")

TOKEN_ENV = "SHARDLENS_REVIEW_TOKEN"
MIN_TOKEN_LENGTH = 16
TOKEN_HINT = "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'"


class DashboardError(RuntimeError):
    """The dashboard cannot start as asked; the message says why and what to do."""


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` reaches this machine only: 127.0.0.0/8, ::1 or ``localhost``. An empty
    host (Streamlit's default: every interface) and any other name are not."""
    host = (host or "").strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_access(host: str, token: str | None) -> str | None:
    """The token the dashboard will require (None: none), or :class:`DashboardError` when a
    non-loopback ``host`` has no token or the token is too short to resist guessing."""
    token = (token or "").strip() or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise DashboardError(f"the review token must have at least {MIN_TOKEN_LENGTH} characters ({TOKEN_HINT})")
    if token is None and not is_loopback(host):
        raise DashboardError(
            f"--host {host or '(every interface)'} is not a loopback address, so anyone who reaches the port could record reviews: "
            f"set a token with --token or {TOKEN_ENV} ({TOKEN_HINT}), or keep 127.0.0.1 behind a reverse proxy (README)"
        )
    return token


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the expected one (both stripped)."""
    return hmac.compare_digest((given or "").strip().encode("utf-8"), expected.strip().encode("utf-8"))


DEFAULT_HOST = "127.0.0.1"  # this machine only: no token needed
DEFAULT_PORT = 8501  # Streamlit's own


@dataclass(frozen=True)
class DashboardServer:
    """What the dashboard serves and how: the catalog, the review store, the address, whether it
    opens no browser tab (``headless``), and the images and thumbnail folders (None: the run's
    images folder, the default thumbnail cache)."""

    db: str | Path
    reviews: str | Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    headless: bool = True
    images: str | Path | None = None
    thumbnails: str | Path | None = None


def dashboard_command(server: DashboardServer) -> list[str]:
    """The ``python -m streamlit run`` command line for the app."""
    db, reviews, host, port, headless, images, thumbnails = (
        server.db, server.reviews, server.host, server.port, server.headless, server.images, server.thumbnails
    )  # fmt: skip
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


def run_dashboard(server: DashboardServer, token: str | None) -> int:
    """Run the dashboard in the foreground until it is stopped (Ctrl-C); return its exit code.

    ``token``: what every session must present (required unless the host is loopback); refused
    before anything binds."""
    token = check_access(server.host, token)
    check_streamlit()
    if not Path(server.db).exists():
        raise DashboardError(f"catalog {server.db} does not exist: run `snakemake` first")
    cmd = dashboard_command(server)
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    env.pop(TOKEN_ENV, None)
    if token is not None:  # the environment, not argv: /proc/PID/environ is private to its user
        env[TOKEN_ENV] = token
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
