"""Routing a model's text attention through the registered function (or back to SDPA or eager, for comparisons)."""

from __future__ import annotations

from transformers import AttentionInterface, PreTrainedModel
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ocrheads.attention.function import ATTENTION_NAME, ocrheads_attention
from ocrheads.errors import OcrHeadsError


def install(model: PreTrainedModel) -> PreTrainedModel:
    """Route the text model's attention through the registered function; vision towers keep their own."""
    AttentionInterface.register(ATTENTION_NAME, ocrheads_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return use_text_attention(model, ATTENTION_NAME)


def use_text_attention(model: PreTrainedModel, implementation: str) -> PreTrainedModel:
    """Route the text model's attention through `implementation` ("sdpa", "eager": for comparisons)."""
    text_key = "text_config" if "text_config" in getattr(model.config, "sub_configs", {}) else None
    model.set_attn_implementation({text_key: implementation} if text_key else implementation)
    return model


def check_installed(model: PreTrainedModel) -> None:
    if model.config.get_text_config()._attn_implementation != ATTENTION_NAME:
        raise OcrHeadsError("the model's text attention is not ocrheads'; call ocrheads.attention.install(model) first")
