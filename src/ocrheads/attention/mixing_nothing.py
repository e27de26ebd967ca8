"""An attention function under which each query reads only its own position: the vision tower with it installed
keeps its local parts (patch embedding, MLPs, merges, pooling) and loses every path between patches, so which
patches feed an image-token row can be measured (ocrheads.probe). Registered through transformers' attention
interface for the model's non-text sub-models only, and only while a probe runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ocrheads.errors import OcrHeadsError

NAME = "ocrheads_mixing_nothing"


class _Calls:
    count = 0


def mixing_nothing(module, query, key, value, attention_mask, **kwargs) -> tuple[torch.Tensor, None]:
    """Each query's output is its own position's value (its head's key/value group). Cross-attention, whose queries
    have no position among the keys (a resampler's latents), keeps its real attention: it is not a path between
    patches to cut, and a row it mixes is then measured as seeing every patch."""
    if query.shape[2] != key.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    _Calls.count += 1
    groups = query.shape[1] // value.shape[1]
    return value.repeat_interleave(groups, dim=1).transpose(1, 2).contiguous(), None


@contextmanager
def vision_mixing_nothing(model: PreTrainedModel) -> Iterator[None]:
    """Every non-text sub-model of `model` attends with `mixing_nothing` inside the block; a tower whose attention
    does not go through transformers' interface (so cannot be cut) is an error that says so."""
    text = model.config.get_text_config()
    others = [name for name, config in _sub_configs(model) if config is not None and config is not text]
    if not others:
        raise OcrHeadsError(f"{model.config.model_type} has no vision sub-model config to probe")
    AttentionInterface.register(NAME, mixing_nothing)
    before = {name: getattr(model.config, name)._attn_implementation for name in others}
    model.set_attn_implementation(dict.fromkeys(others, NAME))
    _Calls.count = 0
    try:
        yield
        if _Calls.count == 0:
            raise OcrHeadsError(
                f"{model.config.model_type}'s vision tower does not attend through transformers' attention interface, "
                "so its patches cannot be kept apart to measure its geometry; it needs a hand-written adapter"
            )
    finally:
        model.set_attn_implementation(before)


def _sub_configs(model: PreTrainedModel) -> list[tuple[str, object]]:
    return [(name, getattr(model.config, name)) for name in getattr(model.config, "sub_configs", {})]
