"""An attention function under which each query reads only its own position: the vision tower with it installed
keeps its local parts (patch embedding, MLPs, merges, pooling) and loses every path between patches, so which
patches feed an image-token row can be measured (ocrheads.probe). Registered through transformers' attention
interface for the model's non-text sub-models only, and only while a probe runs.

Some towers compute their attention by hand (GOT-OCR2's and DeepSeek-OCR2's SAM encoders): there the same cut is
made on the two calls such code attends with, a softmax over a square score matrix and torch's scaled dot-product
attention of as many queries as keys, intercepted by a torch function mode while the block runs. The probe only
runs the image side of a model (it stops where the text model starts), so no text attention is cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ocrheads.errors import OcrHeadsError

NAME = "ocrheads_mixing_nothing"


class _Calls:
    count = 0


def mixing_nothing(module, query, key, value, attention_mask, **kwargs) -> tuple[torch.Tensor, None]:
    """Each query's output is its own position's value (its head's key/value group). Cross-attention, whose queries
    have no position among the keys (a resampler's latents, a Q-former's queries; known by its lengths or by the
    module's own flag where they agree), keeps its real attention: it is not a path between
    patches to cut, and a row it mixes is then measured as seeing every patch."""
    if query.shape[2] != key.shape[2] or getattr(module, "is_cross_attention", False):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    _Calls.count += 1
    groups = query.shape[1] // value.shape[1]
    return value.repeat_interleave(groups, dim=1).transpose(1, 2).contiguous(), None


SOFTMAXES = (F.softmax, torch.softmax, torch.Tensor.softmax)


class _HandWrittenAttentionCut(TorchFunctionMode):
    """Attention written without transformers' interface, cut as `mixing_nothing` cuts it: a softmax over the last
    axis of square scores gives each query all of its weight on itself; scaled dot-product attention of as many
    queries as keys gives each its own value."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SOFTMAXES:
            scores, dim = args[0], kwargs.get("dim", args[1] if len(args) > 1 else None)
            if scores.ndim >= 2 and scores.shape[-1] == scores.shape[-2] and dim in (-1, scores.ndim - 1):
                _Calls.count += 1
                dtype = kwargs.get("dtype") or scores.dtype
                return torch.eye(scores.shape[-1], dtype=dtype, device=scores.device).expand(scores.shape)
        if func is F.scaled_dot_product_attention:
            query, key, value = args[:3]
            if query.shape[-2] == key.shape[-2]:
                _Calls.count += 1
                return value.repeat_interleave(query.shape[-3] // value.shape[-3], dim=-3)
        return func(*args, **kwargs)


@contextmanager
def vision_mixing_nothing(model: PreTrainedModel) -> Iterator[None]:
    """Every non-text sub-model of `model` attends with `mixing_nothing` inside the block, and hand-written attention
    is cut alike; a tower in which nothing was cut is an error that says so."""
    text = model.config.get_text_config()
    others = [name for name, config in _sub_configs(model) if config is not None and config is not text]
    if not others:
        raise OcrHeadsError(f"{model.config.model_type} has no vision sub-model config to probe")
    AttentionInterface.register(NAME, mixing_nothing)
    settable = {id(module.config) for module in model.modules() if _attends_through_interface(module)}
    switched = [name for name in others if id(getattr(model.config, name)) in settable]
    before = {name: getattr(model.config, name)._attn_implementation for name in switched}
    if switched:  # (transformers warns of every sub-model it cannot switch on each call)
        model.set_attn_implementation(dict.fromkeys(switched, NAME))
    _Calls.count = 0
    try:
        with _HandWrittenAttentionCut():
            yield
        if _Calls.count == 0:
            raise OcrHeadsError(
                f"{model.config.model_type}'s vision tower attends neither through transformers' attention interface "
                "nor by a softmax or scaled dot-product attention the probe can cut, so its patches cannot be kept "
                "apart to measure its geometry; it needs a hand-written adapter"
            )
    finally:
        if switched:
            model.set_attn_implementation(before)


def _sub_configs(model: PreTrainedModel) -> list[tuple[str, object]]:
    return [(name, getattr(model.config, name)) for name in getattr(model.config, "sub_configs", {})]


def _attends_through_interface(module: torch.nn.Module) -> bool:
    """A sub-model whose attention implementation can be switched (GOT-OCR2's SAM encoder's cannot: transformers
    warns and leaves it)."""
    return isinstance(module, PreTrainedModel) and module._can_set_attn_implementation()
