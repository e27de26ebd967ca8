"""Library versions as runs, datasets and reports record them. ocrheads' own comes from the package itself, so it
also runs uninstalled, from src/ on the path (as on a bare GPU machine with carried wheels)."""

from __future__ import annotations

from importlib.metadata import version

from ocrheads import __version__


def versions(*names: str) -> dict[str, str]:
    return {name: __version__ if name == "ocrheads" else version(name) for name in names}
