"""The transformers releases ocrheads is tested with, and one warning line when another one is loaded.

`make test-compat` runs the version-sensitive tests under both ends of this range; pyproject.toml declares the
same range (a unit test keeps the two equal). Adapters lean on transformers internals (processor loading, attention
and mask interfaces, rotary indices), which move between minor releases, so a version outside the range may
compute with other image tokens without failing; it is warned about, not refused.
"""

from __future__ import annotations

import logging
from functools import cache

import transformers
from packaging.version import Version

TESTED_TRANSFORMERS = (Version("5.24.0"), Version("5.25.0"))  # oldest and newest release the compat tests passed on

log = logging.getLogger("ocrheads")


def transformers_requirement() -> str:
    """The pip requirement that admits exactly the tested minor releases (and their patch releases)."""
    oldest, newest = TESTED_TRANSFORMERS
    return f"transformers>={oldest},<{newest.major}.{newest.minor + 1}"


def within_tested_range(installed: str) -> bool:
    oldest, newest = TESTED_TRANSFORMERS
    release = Version(installed)
    return oldest <= release and (release.major, release.minor) <= (newest.major, newest.minor)


@cache
def warn_if_untested(installed: str = transformers.__version__) -> bool:
    """Log one line (once per process) when the installed transformers is outside the tested range; True then."""
    if within_tested_range(installed):
        return False
    oldest, newest = TESTED_TRANSFORMERS
    log.warning(
        "warning: transformers %s is installed, but ocrheads is tested with %s to %s.x; image tokens and attention "
        "may differ (run `ocrheads verify` on your checkpoint, or install from the lock: make test)",
        installed, oldest, f"{newest.major}.{newest.minor}",
    )  # fmt: skip
    return True
