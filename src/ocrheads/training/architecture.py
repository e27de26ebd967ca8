"""The demo model before training: a small Qwen2-VL with a byte-level BPE tokenizer learnt from the task's text.

Everything is built offline from code and a seed. The image processor inverts pixels (ink = 1, paper = 0):
blank patches then embed to zero, which made glyph reading learnable in minutes on a CPU. Word embeddings are
tied (as in Qwen2-VL-2B), so copying a digit is close to an identity map, for text and for image tokens alike.
"""

from __future__ import annotations

import random

import torch
import transformers as tf

from ocrheads.data.haystack import FakerText
from ocrheads.data.passkey import INTRO, NEEDLE, QUESTION
from ocrheads.models.base import image_only
from ocrheads.models.vocab import QWEN_SPECIALS, byte_tokenizer

VOCAB_SIZE = 2048
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
END_OF_TURN = "<|im_end|>"
TEXT = dict(
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=6,
    num_attention_heads=8,
    num_key_value_heads=4,
    # mrope gives its sections the rotary frequencies in order t, h, w, fastest first. Text tokens have t = h = w,
    # so the split does not matter to them; image columns (w) get all but the two fastest pairs, so neighbours on
    # a line are as far apart by position as neighbouring text tokens. With [4, 6, 6] columns got only the slowest
    # six (at most 0.003 rad per column) and, in training, pages stalled at about two digits read in order.
    rope_parameters={"rope_type": "default", "mrope_section": [1, 1, 14], "rope_theta": 10000.0},
)
VISION = dict(depth=4, embed_dim=96, num_heads=4, mlp_ratio=2, patch_size=14, spatial_merge_size=2)
PIXELS = dict(min_pixels=4 * 28 * 28, max_pixels=1024 * 28 * 28)


def build_tokenizer(seed: int) -> tf.PreTrainedTokenizerBase:
    """Byte-level BPE (digits stay single tokens) with merges learnt from seeded haystack text and the prompts."""
    source, rng = FakerText(), random.Random(f"{seed}:tokenizer")
    texts = [" ".join(source.sentences(rng, 4000)) for _ in range(100)] + [INTRO, NEEDLE, QUESTION] * 50
    tokenizer = byte_tokenizer(QWEN_SPECIALS).train_new_from_iterator(texts, vocab_size=VOCAB_SIZE)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer: tf.PreTrainedTokenizerBase) -> tf.ProcessorMixin:
    image_processor = tf.Qwen2VLImageProcessorPil(
        patch_size=VISION["patch_size"],
        merge_size=VISION["spatial_merge_size"],
        image_mean=[1.0, 1.0, 1.0],
        image_std=[-1.0, -1.0, -1.0],
        size={"shortest_edge": PIXELS["min_pixels"], "longest_edge": PIXELS["max_pixels"]},
    )
    processor_class = image_only(tf.Qwen2VLProcessor)
    return processor_class(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_model(tokenizer: tf.PreTrainedTokenizerBase, seed: int) -> tf.Qwen2VLForConditionalGeneration:
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in QWEN_SPECIALS}
    end = ids[END_OF_TURN]
    config = tf.Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            bos_token_id=end,
            eos_token_id=end,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
            **TEXT,
        ),
        vision_config=dict(hidden_size=TEXT["hidden_size"], **VISION),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = tf.Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = end
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model
