"""What every run directory shares: a config that pins it, and files that appear whole or not at all."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ocrheads.atomic import atomic_write_text
from ocrheads.errors import OcrHeadsError


def versions() -> dict[str, str]:
    return {name: version(name) for name in ("ocrheads", "torch", "transformers")}


def claim(folder: Path, config: dict) -> None:
    """Start a run directory, or continue one whose config matches; refuse a different config."""
    path = folder / "config.yaml"
    if path.is_file():
        before = yaml.safe_load(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in config if k != "versions" and before.get(k) != config[k])
        if changed:
            raise OcrHeadsError(
                f"{folder} was run with a different {', '.join(changed)}; use another --out to keep both"
            )
        return
    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def write_parquet(table: pa.Table, path: Path) -> None:
    staging = path.with_name(f".{path.name}.partial")
    pq.write_table(table, staging)
    staging.replace(path)
