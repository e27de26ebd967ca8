"""Model family adapters, recognised from a checkpoint's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from ocrheads.devices import resolve_device, resolve_dtype
from ocrheads.errors import OcrHeadsError
from ocrheads.models.base import ModelAdapter, checkpoint_grid
from ocrheads.models.gemma3 import Gemma3Adapter
from ocrheads.models.idefics import Idefics3Adapter, SmolVLMAdapter
from ocrheads.models.internvl import InternVLAdapter
from ocrheads.models.llava import LlavaAdapter
from ocrheads.models.qwen_vl import Qwen2_5_VLAdapter, Qwen3VLAdapter, QwenVLAdapter

ADAPTERS: tuple[type[ModelAdapter], ...] = (
    QwenVLAdapter,
    Qwen2_5_VLAdapter,
    Qwen3VLAdapter,
    InternVLAdapter,
    LlavaAdapter,
    Idefics3Adapter,
    SmolVLMAdapter,
    Gemma3Adapter,
)


def adapter_class(config: PretrainedConfig) -> type[ModelAdapter]:
    for adapter in ADAPTERS:
        if config.model_type in adapter.model_types:
            return adapter
    supported = ", ".join(t for adapter in ADAPTERS for t in adapter.model_types)
    raise OcrHeadsError(f"model type {config.model_type!r} is not supported; supported: {supported}")


def checkpoint_config(name_or_path: str | Path) -> PretrainedConfig:
    """A checkpoint's config alone (a small file): what is checked before any weights are loaded."""
    name = str(name_or_path)
    if Path(name).is_dir() and not (Path(name) / "config.json").is_file():
        raise OcrHeadsError(f"--model {name}: the folder has no config.json; pass a checkpoint folder")
    try:
        return AutoConfig.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        if name.startswith((".", "/", "~")) or Path(name).exists():
            reason = f"there is no folder {name}" if not Path(name).exists() else str(err).splitlines()[0]
            raise OcrHeadsError(f"--model {name}: {reason}; pass a checkpoint folder") from None
        raise OcrHeadsError(
            f"--model {name}: not a local folder, and not found on the hub from here; pass a local checkpoint "
            "folder, or the hub id with network access (with HF_HUB_OFFLINE=1, a checkpoint already in the cache)"
        ) from None


def load_adapter(name_or_path: str | Path, **options) -> ModelAdapter:
    """Load a checkpoint (hub id or local folder) through its family's adapter; options as ModelAdapter.load."""
    return adapter_class(checkpoint_config(name_or_path)).load(name_or_path, **options)


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint and how to load it, not loaded yet: runners given one check their data, heads and run
    directory against its config first, and load the weights only then."""

    name: str
    device: str = "cpu"
    dtype: str = "auto"
    device_map: str | None = None
    pixels: dict = field(default_factory=dict)

    @cached_property
    def config(self) -> PretrainedConfig:
        """The checkpoint's config; the load options are checked with it, so a bad one fails before any loading."""
        resolve_device(self.device)
        resolve_dtype(self.dtype)
        config = checkpoint_config(self.name)
        adapter_class(config).check_pixel_options(self.pixels)
        return config

    @property
    def grid(self) -> tuple[int, int]:
        return checkpoint_grid(self.config)

    def pinned(self) -> dict:
        """The part of a run's config known before loading (compared with an existing run before loading)."""
        settings = {"pixels": dict(self.pixels)} | ({"dtype": self.dtype} if self.dtype != "auto" else {})
        return {"model": self.name, "model_settings": settings}

    def load(self) -> ModelAdapter:
        options = dict(device=self.device, dtype=self.dtype, device_map=self.device_map)
        return adapter_class(self.config).load(self.name, **options, **self.pixels)


def resolve(model: ModelAdapter | ModelSpec) -> ModelAdapter:
    return model.load() if isinstance(model, ModelSpec) else model


__all__ = [
    "ADAPTERS",
    "ModelAdapter",
    "ModelSpec",
    "adapter_class",
    "checkpoint_config",
    "checkpoint_grid",
    "load_adapter",
    "resolve",
]
