"""Starting a run of a model: load it, and pin what it records to the run directory. Apart from claim.py so that
the commands that only read runs (select, analyze, report) need no model code."""

from __future__ import annotations

from pathlib import Path

from ocrheads.distributed import Shard
from ocrheads.float32 import precision_setting
from ocrheads.models import ModelAdapter, ModelSpec, resolve
from ocrheads.provenance import made_by, versions
from ocrheads.run.claim import claim, preflight


def open_run(folder: Path, model: ModelAdapter | ModelSpec, known: dict, shard: Shard | None = None) -> ModelAdapter:
    """Start or continue a run directory of `model` and return the loaded model.

    `known` is the run's own config (with its "model" name). Given a ModelSpec, the directory is checked against
    it before the weights are loaded; then the config is pinned with what the loaded model records: family, grid,
    settings, where it runs, library versions and, for a checkpoint train-demo made, how it was trained (those
    three not pinned)."""
    if isinstance(model, ModelSpec):
        model.check_weights()
        preflight(folder, model.pinned() | known, shard)
    adapter = resolve(model)
    recorded = {"family": adapter.family, "grid": list(adapter.grid), "layer_kinds": list(adapter.layer_kinds),
                "model_settings": adapter.settings(), "float32": precision_setting()}  # fmt: skip
    unpinned = {"hardware": adapter.hardware(), "versions": versions("ocrheads", "torch", "transformers")}
    if trained := made_by(adapter.model.name_or_path):
        unpinned["trained_by"] = trained
    claim(folder, known | recorded | unpinned, shard)
    return adapter
