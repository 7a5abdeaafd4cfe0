#!/usr/bin/env python3
"""Refresh docs/report.png, the README's picture of the run report (maintainers only).

Opens a report built by ``snakemake --report results/report.html`` in headless Chromium (the
one the dashboard tests use), goes to Results > CATEGORY, shows the figure and its caption, and
saves the page::

    .venv/bin/python tools/report_screenshot.py results/report.html docs/report.png --category "Text gate"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: its tests/browser.py
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report's HTML file")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--category", default="Text gate", help="the Results category to show")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1560, "height": 760})
        page.goto(args.report.resolve().as_uri())
        page.get_by_text("Results", exact=True).first.click()
        page.get_by_text(args.category, exact=True).first.click()
        page.locator("table a").first.click()  # the eye: the figure
        page.wait_for_selector("img")
        page.locator("table a").nth(1).click()  # the (i): its caption beside it
        page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"{args.out}: written")


if __name__ == "__main__":
    main()
