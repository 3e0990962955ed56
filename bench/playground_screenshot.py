"""Regenerates docs/playground.png, the README's picture of the playground: a real server, the
pandas example run in Debian's headless Chromium.

Run: .venv/bin/python bench/playground_screenshot.py [--out docs/playground.png]"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import expect, sync_playwright
from tests.integration.browser import launch
from tests.integration.server import ROOT, TEST_ENV, running_server

from adapters.settings import VARIABLES

# The service's own defaults, not the tests' short limits, so the picture shows what a
# deployment shows (HOST stays on loopback).
DEFAULT_LIMITS = {
    name: VARIABLES[name][1] for name in TEST_ENV if name != "HOST" and VARIABLES[name][1]
} | {"CPU_TIME_S": VARIABLES["WALL_TIME_S"][1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "playground.png")
    parser.add_argument("--example", default="pandas")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server("auto", Path(tmp), DEFAULT_LIMITS) as srv,
        sync_playwright() as playwright,
    ):
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.goto(srv.url + "/")
        expect(page.locator("#service")).to_have_text(re.compile("^Service: ready"))
        page.click(f"button[data-example={args.example}]")
        page.click("#run")
        expect(page.locator("#answer")).to_have_attribute(
            "data-state", re.compile("^(done|error)$"), timeout=30_000
        )
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
