"""The mid-sized random Qwen2-VL every benchmark uses: text 6 layers, hidden 384, 6 query heads, 2 KV heads;
vision depth 4, 192 wide. Big enough that attention dominates at thousands of tokens, small enough for 2 cores."""

from __future__ import annotations

import torch
import transformers as tf

from ocrheads.models.base import image_only
from ocrheads.models.vocab import QWEN_SPECIALS, byte_tokenizer, qwen_vision_ids


def mid_qwen2_vl(min_pixels: int, max_pixels: int):
    """(model, processor), seeded; the image processor keeps every image between the two pixel bounds."""
    tokenizer = byte_tokenizer(QWEN_SPECIALS)
    text = dict(vocab_size=len(tokenizer), hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
                num_attention_heads=6, num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                rope_parameters={"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 1e6})  # fmt: skip
    config = tf.Qwen2VLConfig(
        text_config=text,
        vision_config=dict(depth=4, embed_dim=192, hidden_size=384, num_heads=4, mlp_ratio=2),
        **qwen_vision_ids(tokenizer),
    )
    torch.manual_seed(0)
    model = tf.Qwen2VLForConditionalGeneration(config).eval()
    image_processor = tf.Qwen2VLImageProcessorPil(size={"shortest_edge": min_pixels, "longest_edge": max_pixels})
    return model, image_only(tf.Qwen2VLProcessor)(image_processor=image_processor, tokenizer=tokenizer)
