"""Model family adapters, recognised from a checkpoint's config."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from ocrheads.errors import OcrHeadsError
from ocrheads.models.base import ModelAdapter
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


def load_adapter(name_or_path: str | Path, **options) -> ModelAdapter:
    """Load a checkpoint (hub id or local folder) through its family's adapter."""
    return adapter_class(AutoConfig.from_pretrained(name_or_path)).load(name_or_path, **options)


__all__ = ["ADAPTERS", "ModelAdapter", "adapter_class", "load_adapter"]
