"""Open a report in headless Chromium (through Playwright) and check that it renders: no page or console errors,
every image decoded; keep a full-page screenshot. Needs the `browser` extra and a Chromium binary."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ocrheads.errors import OcrHeadsError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


@dataclass(frozen=True)
class BrowserCheck:
    images: int  # <img> elements on the page
    broken_images: list[str]  # alt texts (or sources) of images that did not decode
    errors: list[str]  # uncaught page errors and console errors
    screenshot: Path


def check_in_browser(report: str | Path, screenshot: str | Path, chromium: str | None = None) -> BrowserCheck:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise OcrHeadsError("checking a report in a browser needs Playwright: pip install ocrheads[browser]") from None
    chromium = chromium or find_chromium()
    if chromium is None:
        raise OcrHeadsError("no Chromium found on PATH; install it (Debian: apt-get install chromium)")
    report, screenshot = Path(report).resolve(), Path(screenshot)
    if not report.is_file():
        raise OcrHeadsError(f"no report at {report}; run `ocrheads report RUN` or `ocrheads demo` first")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(report.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0, i.alt || i.src.slice(0, 40)])"
            )
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return BrowserCheck(len(images), [name for ok, name in images if not ok], errors, screenshot)
