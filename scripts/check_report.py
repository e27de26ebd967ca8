"""Open a report in headless Chromium, fail on page errors or undecoded images, and keep a screenshot.

    python scripts/check_report.py runs/demo/report.html [--screenshot runs/demo/report.png]
"""

import argparse
import sys
from pathlib import Path

from ocrheads.report.browser import check_in_browser


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path, help="default: beside the report, as .png")
    args = parser.parse_args()
    found = check_in_browser(args.report, args.screenshot or args.report.with_suffix(".png"))
    print(f"{found.images} images, {len(found.broken_images)} broken, {len(found.errors)} errors; "
          f"screenshot {found.screenshot}")  # fmt: skip
    for problem in found.broken_images + found.errors:
        print(f"  {problem}")
    return 0 if found.images and not found.broken_images and not found.errors else 1


if __name__ == "__main__":
    sys.exit(main())
