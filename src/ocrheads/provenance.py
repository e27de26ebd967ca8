"""What runs, datasets and reports record about how something was made: library versions, and how a checkpoint
was trained. ocrheads' own version comes from the package itself, so it also runs uninstalled, from src/ on the
path (as on a bare GPU machine with carried wheels)."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import yaml

from ocrheads import __version__


def versions(*names: str) -> dict[str, str]:
    return {name: __version__ if name == "ocrheads" else version(name) for name in names}


def made_by(checkpoint: str | Path) -> list[dict] | None:
    """How a checkpoint folder was trained (command, code, first step of each invocation), from the training.yaml
    train-demo writes beside the weights; None for any other checkpoint (a hub id, a folder without the record)."""
    path = Path(checkpoint) / "training.yaml"
    record = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    runs = record.get("runs") if isinstance(record, dict) else None
    return [{key: run[key] for key in ("command", "code", "first_step")} for run in runs] if runs else None


def revision(source: Path) -> str | None:
    """The hub revision of a hub-cache snapshot folder (…/snapshots/<commit>), else unknown."""
    match = re.fullmatch(r"[0-9a-f]{40}", source.resolve().name)
    return match.group(0) if match and source.resolve().parent.name == "snapshots" else None
