"""Offline vocabularies: a byte-level tokenizer with no merges plus a family's special tokens, and the Qwen-VL
special tokens and the config ids that name them. The bundled demo model and the tiny test models are built on them,
since no tokenizer can be downloaded here."""

from __future__ import annotations

import transformers as tf
from transformers.convert_slow_tokenizer import bytes_to_unicode


def byte_tokenizer(specials: list[str], named: dict[str, str] | None = None) -> tf.PreTrainedTokenizerBase:
    """A byte-level tokenizer with no merges (each byte one token, digits split) plus special tokens."""
    vocab = {char: index for index, char in enumerate(sorted(bytes_to_unicode().values(), key=ord))}
    vocab["<|endoftext|>"] = len(vocab)
    named = named or {}
    tokenizer = tf.Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_specific_special_tokens=named,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [*specials, *named.values()]})
    return tokenizer


QWEN_SPECIALS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def qwen_vision_ids(tokenizer) -> dict[str, int]:
    """The image/video token ids a Qwen-VL config names, from a tokenizer holding Qwen's special tokens."""
    names = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
             "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}  # fmt: skip
    return {field: tokenizer.convert_tokens_to_ids(token) for field, token in names.items()}
