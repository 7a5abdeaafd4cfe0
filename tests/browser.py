"""The headless Chromium the browser tests drive (tests/test_dashboard.py), and the maintainers'
screenshot and benchmark scripts with them (tools/report_screenshot.py, bench/dashboard_scale.py):
Debian's chromium (.ci/install-browser.sh installs it) run headless as root. The profile
(--user-data-dir) is a fresh temporary folder each time, given by the caller."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")

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
