"""Tiny random-weight VLMs of every supported family, built from configs with an offline tokenizer.

They read nothing, but every code path (processor, image tokens, masks, rotary variants, GQA, sliding windows)
is the real one, so tests and benchmarks run offline on them. Recipes: ../shared/RECIPES.md section 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import transformers as tf

from ocrheads.models.base import image_only
from ocrheads.models.pixtral import transformers_processor
from ocrheads.models.vocab import QWEN_SPECIALS, byte_tokenizer, qwen_vision_ids

# families without a hand-written adapter: the generic one measures their geometry; each where the installed
# transformers has its model (LLaVA-OneVision-1.5 came in 5.25)
NEEDS = {
    "llava_onevision1_5": "LlavaOnevision15ForConditionalGeneration",
    "hunyuan_vl": "HunYuanVLForConditionalGeneration",
}
GENERIC = ("aya_vision", "lighton_ocr", "llava_onevision1_5", "paddleocr_vl", "ovis2", "hunyuan_vl", "minicpmv4_6",
           "got_ocr2", "granite4_vision")  # fmt: skip
GENERIC_FAMILIES = tuple(family for family in GENERIC if hasattr(tf, NEEDS.get(family, "PreTrainedModel")))
FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl", "llava", "smolvlm", "idefics3", "gemma3", "paligemma",
            "paligemma2", "pixtral", "mistral3", "llava_next", "llava_onevision", "qwen3_vl_moe", "glm4v",
            "glm4v_moe", "glm46v", "qwen3_5", "qwen3_5_moe", "mllama", "gemma4", "gemma4_moe",
            *GENERIC_FAMILIES)  # fmt: skip


def text_config(vocab_size: int, **extra) -> dict:
    """Two layers of 64 with 4 heads on 2 key/value heads, unless `extra` says otherwise."""
    return (
        dict(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        | extra
    )


def vision_tower(image_size, patch_size, **extra) -> dict:
    """A two-layer, 32-wide ViT config (CLIP, SigLIP, InternViT and Idefics3 share these field names)."""
    return dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        **extra,
    )


@dataclass
class Tiny:
    model: tf.PreTrainedModel
    processor: tf.ProcessorMixin
    image_placeholder: str  # what a prompt writes where an image goes


QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"  # where a Qwen-style prompt puts an image


def _qwen(model_class, config_class, processor_class, vision: dict, text_extra: dict, patch: int) -> Tiny:
    tokenizer = byte_tokenizer(QWEN_SPECIALS)
    config = config_class(
        text_config=text_config(len(tokenizer), **text_extra), vision_config=vision, **qwen_vision_ids(tokenizer)
    )
    image_processor = tf.Qwen2VLImageProcessorPil(
        patch_size=patch,
        merge_size=2,
        size={"shortest_edge": 4 * (2 * patch) ** 2, "longest_edge": 256 * (2 * patch) ** 2},
    )
    processor = image_only(processor_class)(image_processor=image_processor, tokenizer=tokenizer)
    return Tiny(model_class(config).eval(), processor, QWEN_IMAGE)


MROPE = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6}


def _qwen_vision(**extra) -> dict:
    """The Qwen2.5-VL / Qwen3-VL vision tower shape, two blocks deep."""
    return dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, **extra)


def qwen2_vl() -> Tiny:
    vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    return _qwen(
        tf.Qwen2VLForConditionalGeneration,
        tf.Qwen2VLConfig,
        tf.Qwen2VLProcessor,
        vision,
        {"rope_parameters": MROPE},
        14,
    )


def qwen2_5_vl() -> Tiny:
    vision = _qwen_vision(window_size=56, fullatt_block_indexes=[1])
    return _qwen(
        tf.Qwen2_5_VLForConditionalGeneration,
        tf.Qwen2_5_VLConfig,
        tf.Qwen2_5_VLProcessor,
        vision,
        {"rope_parameters": MROPE},
        14,
    )


QWEN3_VISION = dict(num_position_embeddings=64, deepstack_visual_indexes=[0], patch_size=16)
QWEN3_TEXT = {"rope_parameters": {**MROPE, "mrope_interleaved": True}, "head_dim": 16}


def qwen3_vl() -> Tiny:
    vision = _qwen_vision(**QWEN3_VISION)
    return _qwen(tf.Qwen3VLForConditionalGeneration, tf.Qwen3VLConfig, tf.Qwen3VLProcessor, vision, QWEN3_TEXT, 16)


def qwen3_vl_moe() -> Tiny:
    """Qwen3-VL on a mixture-of-experts text model: four experts, two a token."""
    moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
    return _qwen(tf.Qwen3VLMoeForConditionalGeneration, tf.Qwen3VLMoeConfig, tf.Qwen3VLProcessor,
                 _qwen_vision(**QWEN3_VISION), QWEN3_TEXT | moe, 16)  # fmt: skip


# Qwen3.5's hybrid text model: a linear-attention (gated delta rule) layer between two softmax layers, so that a
# linear layer sits where layer indices could shift
HYBRID = dict(num_hidden_layers=3, layer_types=["full_attention", "linear_attention", "full_attention"],
              linear_conv_kernel_dim=2, linear_key_head_dim=8, linear_value_head_dim=8, linear_num_key_heads=2,
              linear_num_value_heads=4)  # fmt: skip


def qwen3_5() -> Tiny:
    """Qwen3.5: Qwen3-VL's vision and pages, a hybrid linear/softmax text model."""
    return _qwen(tf.Qwen3_5ForConditionalGeneration, tf.Qwen3_5Config, tf.Qwen3VLProcessor,
                 _qwen_vision(**QWEN3_VISION), QWEN3_TEXT | HYBRID, 16)  # fmt: skip


def qwen3_5_moe() -> Tiny:
    """Qwen3.5-MoE: the hybrid text model with mixture-of-experts MLPs (four experts, two a token, a shared one)."""
    moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32)
    return _qwen(tf.Qwen3_5MoeForConditionalGeneration, tf.Qwen3_5MoeConfig, tf.Qwen3VLProcessor,
                 _qwen_vision(**QWEN3_VISION), QWEN3_TEXT | HYBRID | moe, 16)  # fmt: skip


GLM_SPECIALS = ["<|image|>", "<|begin_of_image|>", "<|end_of_image|>", "<|video|>", "<|begin_of_video|>",
                "<|end_of_video|>"]  # fmt: skip


def _glm(model_class, config_class, processor_class, text_extra: dict) -> Tiny:
    """GLM-4.1V's layout at toy sizes: half of each head rotated (M-RoPE), a 2 x 2 patch merge."""
    tokenizer = byte_tokenizer(GLM_SPECIALS)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in GLM_SPECIALS}
    rope = {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e4, "partial_rotary_factor": 0.5}
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, image_size=56,
                  patch_size=14, spatial_merge_size=2)  # fmt: skip
    config = config_class(
        text_config=text_config(len(tokenizer), rope_parameters=rope, **text_extra), vision_config=vision,
        image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"], image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"], video_end_token_id=ids["<|end_of_video|>"],
    )  # fmt: skip
    image_processor = tf.Glm4vImageProcessorPil(
        size={"shortest_edge": 4 * 28**2, "longest_edge": 256 * 28**2}, patch_size=14, merge_size=2
    )
    processor = image_only(processor_class)(image_processor=image_processor, tokenizer=tokenizer)
    return Tiny(model_class(config).eval(), processor, "<|begin_of_image|><|image|><|end_of_image|>")


def glm4v() -> Tiny:
    return _glm(tf.Glm4vForConditionalGeneration, tf.Glm4vConfig, tf.Glm4vProcessor, {})


def glm4v_moe() -> Tiny:
    """GLM-4.5V's layout: a mixture-of-experts text model, its first layer dense."""
    moe = dict(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, first_k_dense_replace=1,
               n_shared_experts=1, n_group=1, topk_group=1)  # fmt: skip
    return _glm(tf.Glm4vMoeForConditionalGeneration, tf.Glm4vMoeConfig, tf.Glm4vProcessor, moe)


def glm46v() -> Tiny:
    return _glm(tf.Glm46VForConditionalGeneration, tf.Glm46VConfig, tf.Glm46VProcessor, {})


def internvl() -> Tiny:
    named = {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    }
    tokenizer = byte_tokenizer(["<|im_start|>", "<|im_end|>"], named)
    config = tf.InternVLConfig(
        vision_config=vision_tower([56, 56], [14, 14]),
        text_config=dict(model_type="qwen2", **text_config(len(tokenizer))),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=4,
        downsample_ratio=0.5,
    )
    image_processor = tf.GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=True, max_patches=6)
    processor = image_only(tf.InternVLProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4
    )
    return Tiny(tf.InternVLForConditionalGeneration(config).eval(), processor, "<IMG_CONTEXT>")


def llava() -> Tiny:
    tokenizer = byte_tokenizer(["<image>"])
    config = tf.LlavaConfig(
        vision_config=vision_tower(56, 14, model_type="clip_vision_model"),
        text_config=dict(model_type="llama", **text_config(len(tokenizer))),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=16,
        vision_feature_layer=-1,
    )
    image_processor = tf.CLIPImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    processor = tf.LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return Tiny(tf.LlavaForConditionalGeneration(config).eval(), processor, "<image>")


IDEFICS_SPECIALS = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
]


def _idefics(model_class, config_class, processor_class, image_processor_class) -> Tiny:
    tokenizer = byte_tokenizer(IDEFICS_SPECIALS)
    config = config_class(
        vision_config=vision_tower(64, 16),
        text_config=dict(model_type="llama", **text_config(len(tokenizer))),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    image_processor = image_processor_class(
        size={"longest_edge": 128}, max_image_size={"longest_edge": 64}, do_image_splitting=True
    )
    kwargs = {"image_seq_len": 4}
    processor_class = image_only(processor_class) if processor_class is tf.SmolVLMProcessor else processor_class
    processor = processor_class(image_processor=image_processor, tokenizer=tokenizer, **kwargs)
    return Tiny(model_class(config).eval(), processor, "<image>")


def smolvlm() -> Tiny:
    return _idefics(
        tf.SmolVLMForConditionalGeneration, tf.SmolVLMConfig, tf.SmolVLMProcessor, tf.SmolVLMImageProcessorPil
    )


def idefics3() -> Tiny:
    return _idefics(
        tf.Idefics3ForConditionalGeneration, tf.Idefics3Config, tf.Idefics3Processor, tf.Idefics3ImageProcessorPil
    )


def gemma3() -> Tiny:
    named = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    tokenizer = byte_tokenizer(["<start_of_turn>", "<end_of_turn>"], named)
    extra = dict(
        head_dim=16, query_pre_attn_scalar=16, sliding_window=8, layer_types=["sliding_attention", "full_attention"]
    )
    config = tf.Gemma3Config(
        text_config=dict(model_type="gemma3_text", **text_config(len(tokenizer), **extra)),
        vision_config=vision_tower(64, 16, model_type="siglip_vision_model"),
        mm_tokens_per_image=4,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.convert_tokens_to_ids("<image_soft_token>"),
    )
    image_processor = tf.Gemma3ImageProcessorPil(size={"height": 64, "width": 64})
    processor = tf.Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4)
    model = tf.Gemma3ForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers starts the projector at zero, which leaves an untrained model blind to pages
        model.model.multi_modal_projector.mm_input_projection_weight.normal_(0, 0.5)
    return Tiny(model, processor, "<start_of_image>")


def _paligemma(text: dict) -> Tiny:
    tokenizer = byte_tokenizer(["<image>"])
    tokenizer.add_special_tokens({"bos_token": "<bos>"})
    config = tf.PaliGemmaConfig(
        vision_config=vision_tower(64, 16, model_type="siglip_vision_model"),
        text_config=text_config(len(tokenizer), **text),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        projection_dim=64,
        hidden_size=64,
        vocab_size=len(tokenizer),
    )
    image_processor = tf.SiglipImageProcessorPil(size={"height": 64, "width": 64})
    image_processor.image_seq_length = 16  # what PaliGemma checkpoints' preprocessor configs carry
    processor = tf.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return Tiny(tf.PaliGemmaForConditionalGeneration(config).eval(), processor, "<image>")


def paligemma() -> Tiny:
    """PaliGemma 1: a Gemma text model."""
    return _paligemma(dict(model_type="gemma", head_dim=16))


def paligemma2() -> Tiny:
    """PaliGemma 2: a Gemma 2 text model, with sliding-window layers and attention-logit softcapping. The cap is 5
    (published models: 50) and the weights ten times the default scale, so that the cap bites, and a head's output
    moves the logits through Gemma 2's post-attention norms."""
    extra = dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=8, attn_logit_softcapping=5.0,
                 final_logit_softcapping=30.0, layer_types=["sliding_attention", "full_attention"],
                 initializer_range=0.2)  # fmt: skip
    return _paligemma(dict(model_type="gemma2", **extra))


PIXTRAL_SPECIALS = ["[IMG]", "[IMG_BREAK]", "[IMG_END]"]


def _pixtral_tower() -> dict:
    return vision_tower(128, 16, model_type="pixtral", head_dim=16)


def _pixtral_processor(tokenizer, merge: int) -> tf.PixtralProcessor:
    image_processor = tf.PixtralImageProcessorPil(size={"longest_edge": 64 * merge}, patch_size=16)
    return transformers_processor()(image_processor=image_processor, tokenizer=tokenizer, patch_size=16,
                                    spatial_merge_size=merge)  # fmt: skip


def pixtral() -> Tiny:
    """A LLaVA checkpoint with a Pixtral tower (Pixtral-12B's layout): every patch a token, no CLS."""
    tokenizer = byte_tokenizer(PIXTRAL_SPECIALS)
    config = tf.LlavaConfig(
        vision_config=_pixtral_tower(),
        text_config=dict(model_type="mistral", **text_config(len(tokenizer), head_dim=16)),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    return Tiny(tf.LlavaForConditionalGeneration(config).eval(), _pixtral_processor(tokenizer, 1), "[IMG]")


def mistral3() -> Tiny:
    """Mistral 3: a Pixtral tower whose 2 x 2 patch blocks are merged into one token."""
    tokenizer = byte_tokenizer(PIXTRAL_SPECIALS)
    config = tf.Mistral3Config(
        vision_config=_pixtral_tower(),
        text_config=dict(model_type="mistral", **text_config(len(tokenizer), head_dim=16)),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
        vision_feature_layer=-1,
    )
    return Tiny(tf.Mistral3ForConditionalGeneration(config).eval(), _pixtral_processor(tokenizer, 2), "[IMG]")


def llava_next() -> Tiny:
    """LLaVA-NeXT at a quarter of llava-v1.6's sizes: 56-px tiles of 4 x 4 features (CLIP, CLS dropped), the
    published pinpoints scaled alike."""
    tokenizer = byte_tokenizer(["<image>"])
    pinpoints = [[56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]
    config = tf.LlavaNextConfig(
        vision_config=vision_tower(56, 14, model_type="clip_vision_model"),
        text_config=dict(model_type="llama", **text_config(len(tokenizer))),
        image_grid_pinpoints=pinpoints,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    image_processor = tf.LlavaNextImageProcessorPil(
        size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, image_grid_pinpoints=pinpoints
    )
    processor = tf.LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )  # fmt: skip
    return Tiny(tf.LlavaNextForConditionalGeneration(config).eval(), processor, "<image>")


def llava_onevision() -> Tiny:
    """LLaVA-OneVision with 64-px tiles of 4 x 4 features (SigLIP, no CLS), canvases of up to 3 x 3 tiles and
    anyres_max_4, so that large pages' grids are interpolated down."""
    tokenizer = byte_tokenizer(["<image>", "<video>"])
    pinpoints = [[64 * rows, 64 * cols] for rows in range(1, 4) for cols in range(1, 4)]
    config = tf.LlavaOnevisionConfig(
        vision_config=vision_tower(64, 16, model_type="siglip_vision_model"),
        text_config=dict(model_type="qwen2", **text_config(len(tokenizer))),
        image_grid_pinpoints=pinpoints,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_4",
    )
    image_processor = tf.LlavaOnevisionImageProcessorPil(
        size={"height": 64, "width": 64}, image_grid_pinpoints=pinpoints
    )
    processor = image_only(tf.LlavaOnevisionProcessor)(
        image_processor=image_processor, tokenizer=tokenizer, num_image_tokens=16,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_4",
    )  # fmt: skip
    return Tiny(tf.LlavaOnevisionForConditionalGeneration(config).eval(), processor, "<image>")


def mllama() -> Tiny:
    """Llama 3.2 Vision's layout: 56-px tiles of 4 x 4 patches and a CLS token, up to four a page, seen by one
    cross-attention layer between two self-attention layers. Its gates open halfway (a new checkpoint's are closed,
    which would leave the image unread)."""
    tokenizer = byte_tokenizer(["<|image|>", "<|python_tag|>"])
    tokenizer.add_special_tokens({"bos_token": "<|begin_of_text|>"})
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
                  image_size=56, patch_size=14, max_num_tiles=4, intermediate_layers_indices=[0],
                  vision_output_dim=64)  # fmt: skip
    config = tf.MllamaConfig(
        vision_config=vision,
        text_config=text_config(len(tokenizer), num_hidden_layers=3, cross_attention_layers=[1]),
        image_token_index=tokenizer.convert_tokens_to_ids("<|image|>"),
    )
    model = tf.MllamaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            if isinstance(layer, tf.models.mllama.modeling_mllama.MllamaCrossAttentionDecoderLayer):
                layer.cross_attn_attn_gate.fill_(0.5)
                layer.cross_attn_mlp_gate.fill_(0.5)
    image_processor = tf.MllamaImageProcessorPil(size={"height": 56, "width": 56}, max_image_tiles=4)
    return Tiny(model, tf.MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer), "<|image|>")


def _gemma4(**moe) -> Tiny:
    """Gemma 4's layout at toy sizes: 8-px patches pooled 3 x 3 into 24-px tokens, at most 70 a page; sliding-window
    and global layers (the global ones with wider heads), the last two reusing the keys and values of the first two,
    per-layer inputs as the small checkpoints have."""
    named = {"boi_token": "<|image>", "eoi_token": "<image|>", "image_token": "<|image|>",
             "boa_token": "<|audio>", "eoa_token": "<audio|>", "audio_token": "<|audio|>"}  # fmt: skip
    tokenizer = byte_tokenizer(["<start_of_turn>", "<end_of_turn>"], named)
    layers = ["sliding_attention", "full_attention"] * 2
    text = text_config(len(tokenizer), num_hidden_layers=4, head_dim=16, global_head_dim=32, sliding_window=8,
                       layer_types=layers, num_kv_shared_layers=2, hidden_size_per_layer_input=16,
                       vocab_size_per_layer_input=len(tokenizer), model_type="gemma4_text", **moe)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=16, patch_size=8, pooling_kernel_size=3,
                  position_embedding_size=64)  # fmt: skip
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in named.items()}
    config = tf.Gemma4Config(
        text_config=text, vision_config=vision, audio_config=None, boi_token_id=ids["boi_token"],
        eoi_token_id=ids["eoi_token"], image_token_id=ids["image_token"], video_token_id=ids["image_token"],
        boa_token_id=ids["boa_token"], eoa_token_index=ids["eoa_token"], audio_token_id=ids["audio_token"],
    )  # fmt: skip
    image_processor = tf.Gemma4ImageProcessorPil(patch_size=8, max_soft_tokens=70, pooling_kernel_size=3)
    processor = image_only(tf.Gemma4Processor)(
        image_processor=image_processor, tokenizer=tokenizer, feature_extractor=tf.Gemma4AudioFeatureExtractor(),
        image_seq_length=70,
    )  # fmt: skip
    return Tiny(tf.Gemma4ForConditionalGeneration(config).eval(), processor, "<|image|>")


def gemma4() -> Tiny:
    return _gemma4()


def gemma4_moe() -> Tiny:
    """Gemma 4 with a mixture-of-experts block in every layer: four experts, two a token."""
    return _gemma4(enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32)


AYA_SPECIALS = ["<image>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>", "TILE",
                "TILE_GLOBAL"]  # fmt: skip


def aya_vision() -> Tiny:
    """Aya Vision (no hand-written adapter: the generic one probes it): up to four 64-pixel crops and a thumbnail,
    16-pixel SigLIP patches, 2 x 2 pixel shuffle, a Cohere 2 text model."""
    tokenizer = byte_tokenizer(AYA_SPECIALS)
    text = text_config(len(tokenizer), head_dim=16, layer_types=["sliding_attention", "full_attention"],
                       sliding_window=8)  # fmt: skip
    config = tf.AyaVisionConfig(
        vision_config=vision_tower(64, 16, model_type="siglip_vision_model", vision_use_head=False),
        text_config=dict(model_type="cohere2", **text),
        image_token_index=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"),
        downsample_factor=2,
        alignment_intermediate_size=64,
    )
    image_processor = tf.GotOcr2ImageProcessorPil(size={"height": 64, "width": 64}, crop_to_patches=True,
                                                  max_patches=4)  # fmt: skip
    processor = tf.AyaVisionProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=16, img_size=64, downsample_factor=2
    )
    return Tiny(tf.AyaVisionForConditionalGeneration(config).eval(), processor, "<image>")


def lighton_ocr() -> Tiny:
    """LightOnOCR (generic adapter): a Pixtral tower whose 2 x 2 patch blocks are merged, a Qwen3 text model; a page
    side's remainder under 32 px is seen by no token."""
    tokenizer = byte_tokenizer([], {"image_token": "[IMG]", "image_break_token": "[IMG_BREAK]",
                                    "image_end_token": "[IMG_END]"})  # fmt: skip
    config = tf.LightOnOcrConfig(
        vision_config=_pixtral_tower(),
        text_config=dict(model_type="qwen3", **text_config(len(tokenizer), head_dim=16)),
        image_token_id=tokenizer.image_token_id,
        spatial_merge_size=2,
    )
    image_processor = tf.PixtralImageProcessorPil(size={"longest_edge": 128}, patch_size=16)
    processor = tf.LightOnOcrProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=16,
                                       spatial_merge_size=2)  # fmt: skip
    return Tiny(tf.LightOnOcrForConditionalGeneration(config).eval(), processor, "[IMG]")


# the user turn as Qwen-style chat templates write it: each image between vision start and end tokens
QWEN_STYLE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def llava_onevision1_5() -> Tiny:
    """LLaVA-OneVision-1.5 (generic adapter): a RiceViT tower (a CLS token a frame, 2 x 2 patches merged) on Qwen2-VL's
    processor with one frame a patch, a Qwen3 text model, Qwen-style prompts from its chat template."""
    tokenizer = byte_tokenizer(QWEN_SPECIALS)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
                  out_hidden_size=64)  # fmt: skip
    config = tf.LlavaOnevision15Config(
        vision_config=vision,
        text_config=dict(model_type="qwen3", **text_config(len(tokenizer), head_dim=16)),
        **qwen_vision_ids(tokenizer),
    )
    size = {"shortest_edge": 4 * 28**2, "longest_edge": 256 * 28**2}
    image_processor = tf.Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=1, size=size)
    processor = image_only(tf.Exaone4_5_Processor)(image_processor=image_processor, tokenizer=tokenizer,
                                                   chat_template=QWEN_STYLE_TEMPLATE)  # fmt: skip
    return Tiny(tf.LlavaOnevision15ForConditionalGeneration(config).eval(), processor, QWEN_IMAGE)


def paddleocr_vl() -> Tiny:
    """PaddleOCR-VL (generic adapter): a SigLIP-style tower over Qwen-style patches (one frame, 2 x 2 merged), an
    ERNIE text model with 3-D rotary positions, Qwen-style prompts."""
    tokenizer = byte_tokenizer([s for s in QWEN_SPECIALS if s != "<|image_pad|>"], {"image_token": "<|image_pad|>"})
    named = {"vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>",
             "video_token_id": "<|video_pad|>"}  # fmt: skip
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in named.items()}
    config = tf.PaddleOCRVLConfig(
        vision_config=vision_tower(56, 14, spatial_merge_size=2),
        text_config=text_config(len(tokenizer), head_dim=16, rope_parameters=MROPE),
        image_token_id=tokenizer.image_token_id,
        **ids,
    )
    image_processor = tf.PaddleOCRVLImageProcessorPil(size={"shortest_edge": 4 * 28**2, "longest_edge": 256 * 28**2})
    processor = tf.PaddleOCRVLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=QWEN_STYLE_TEMPLATE)  # fmt: skip
    return Tiny(tf.PaddleOCRVLForConditionalGeneration(config).eval(), processor, QWEN_IMAGE)


OVIS_SPECIALS = ["<image>", "<IMG_START>", "<IMG_ATOM>", "<IMG_GRID>", "<IMG_COL>", "<IMG_ROW>", "<IMG_END>"]


def ovis2() -> Tiny:
    """Ovis2 (generic adapter): crops and a thumbnail, each patch turned into a mix of visual words (a softmax over
    a 64-word visual vocabulary embedded), 2 x 2 patches strided into one; a Qwen2 text model."""
    tokenizer = byte_tokenizer(OVIS_SPECIALS)
    indicators = [tokenizer.convert_tokens_to_ids(token) for token in OVIS_SPECIALS[3:]]
    vision = vision_tower(64, 16, vocab_size=64, hidden_stride=2)
    config = tf.Ovis2Config(
        vision_config=vision,
        text_config=dict(model_type="qwen2", **text_config(len(tokenizer))),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_ATOM>"),
        visual_indicator_token_ids=[tokenizer.convert_tokens_to_ids("<IMG_START>"), *indicators],
        vocab_size=len(tokenizer),
        hidden_size=64,
    )
    image_processor = tf.Ovis2ImageProcessorPil(size={"height": 64, "width": 64}, crop_to_patches=True, max_patches=4)
    processor = tf.Ovis2Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_length=4)
    return Tiny(tf.Ovis2ForConditionalGeneration(config).eval(), processor, "<image>")


def hunyuan_vl() -> Tiny:
    """HunYuanOCR / HunYuanVL (generic adapter): 16-px patches merged 2 x 2 over the resized page, each row of tokens
    ended by one more image token that sees no pixels, and two more around the image; a text model whose rotary
    positions run over four axes (sequence, then the image's width, height and index)."""
    tokenizer = byte_tokenizer([], {"image_token": "<img>", "image_start_token": "<img_start>",
                                    "image_end_token": "<img_end>"})  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=16,
                  spatial_merge_size=2, out_hidden_size=64, max_image_size=256, min_image_size=64)  # fmt: skip
    rope = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 2, 2, 2]}
    config = tf.HunYuanVLConfig(
        vision_config=vision,
        text_config=text_config(len(tokenizer), head_dim=16, rope_parameters=rope),
        image_token_id=tokenizer.image_token_id,
        im_start_id=tokenizer.image_start_token_id,
        im_end_id=tokenizer.image_end_token_id,
        im_newline_id=tokenizer.image_token_id,
    )
    image_processor = tf.HunYuanVLImageProcessorPil(size={"shortest_edge": 4 * 32**2, "longest_edge": 256 * 32**2})
    template = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<img_start><img>"
                "<img_end>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}")  # fmt: skip
    processor = tf.HunYuanVLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)
    return Tiny(tf.HunYuanVLForConditionalGeneration(config).eval(), processor, "<img_start><img><img_end>")


def got_ocr2() -> Tiny:
    """GOT-OCR2 (generic adapter): a SAM encoder (4-px patches of a 256-px square, windowed attention with relative
    positions, written by hand, not through transformers' interface), a convolution neck and two stride-2
    convolutions into 16 x 16 tokens whose receptive fields overlap; a Qwen2 text model. No chat template (the
    checkpoint's processor writes its own OCR prompt when given no text). The real encoder's global layers (the same
    attention over all 4096 patches, window 0) are left out: here they cost five times the rest of the model."""
    tokenizer = byte_tokenizer(["<|im_start|>", "<|im_end|>", "<img>", "</img>", "<imgpad>"])
    vision = dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=256,
                  patch_size=4, window_size=8, global_attn_indexes=[], mlp_dim=64)  # fmt: skip
    config = tf.GotOcr2Config(
        vision_config=vision,
        text_config=dict(model_type="qwen2", **text_config(len(tokenizer))),
        image_token_index=tokenizer.convert_tokens_to_ids("<imgpad>"),
        image_seq_length=256,
    )
    image_processor = tf.GotOcr2ImageProcessorPil(size={"height": 256, "width": 256})
    processor = tf.GotOcr2Processor(image_processor=image_processor, tokenizer=tokenizer)
    return Tiny(tf.GotOcr2ForConditionalGeneration(config).eval(), processor, "<imgpad>")


def deepseek_ocr2() -> Tiny:
    """DeepSeek-OCR2 (generic adapter): a SAM encoder (4-px patches, hand-written windowed attention, no global layer
    as in GOT-OCR2's, a convolution neck, two stride-2 convolutions) over up to six 192-px tiles and a 256-px global
    view, whose patches are read by learned queries appended to them in a Qwen2-style encoder (144 a tile, 256 the
    global view: each attends to every patch), then a view separator; a DeepSeek-V2 text model with a dense and a
    mixture-of-experts layer."""
    tokenizer = byte_tokenizer(["<image>", "<|User|>", "<|Assistant|>"])
    sam = dict(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2, image_size=256,
               patch_size=4, window_size=8, global_attn_indexes=[], mlp_dim=64, downsample_channels=[16, 32],
               initializer_range=0.02)  # fmt: skip
    encoder = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, vocab_size=len(tokenizer))  # fmt: skip
    text = text_config(len(tokenizer), n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                       n_shared_experts=1, mlp_layer_types=["dense", "sparse"])  # fmt: skip
    config = tf.DeepseekOcr2Config(
        vision_config=dict(sam_config=sam, encoder_config=encoder),
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    image_processor = tf.DeepseekOcr2ImageProcessorPil(size={"height": 256, "width": 256}, tile_size=192)
    processor = tf.DeepseekOcr2Processor(image_processor=image_processor, tokenizer=tokenizer, patch_size=4,
                                         downsample_ratio=4)  # fmt: skip
    return Tiny(tf.DeepseekOcr2ForConditionalGeneration(config).eval(), processor, "<image>")


def granite4_vision() -> Tiny:
    """Granite 4 Vision (generic adapter): LLaVA-NeXT's tiles (64-px CLIP views of 8 x 8 patches, CLS dropped,
    unpadded, a newline row each), each view's patches read in 4 x 4 windows by a Q-former's 2 x 2 queries, from two
    vision layers and four corner samplings; the text model gets none of it at its input (image tokens zeroed) but
    adds each set at its own layer (deepstack: one layer for the vision layer's set, four for the corners')."""
    tokenizer = byte_tokenizer(["<image>"])
    pinpoints = [[64, 128], [128, 64], [128, 128], [192, 64], [64, 192]]
    config = tf.Granite4VisionConfig(
        vision_config=vision_tower(64, 8, model_type="clip_vision_model") | dict(hidden_size=64, num_attention_heads=1),
        text_config=text_config(len(tokenizer), num_hidden_layers=5),
        qformer_config=dict(intermediate_size=64),
        image_grid_pinpoints=pinpoints,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        downsample_rate="2/4",
        deepstack_layer_map=[[-2, 0]],
        spatial_target_layers=[1, 2, 3, 4],
        projector_dropout=0.0,
    )
    image_processor = tf.LlavaNextImageProcessorPil(
        size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, image_grid_pinpoints=pinpoints
    )
    processor = tf.Granite4VisionProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                           vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                           downsample_rate="2/4")  # fmt: skip
    return Tiny(tf.Granite4VisionForConditionalGeneration(config).eval(), processor, "<image>")


MINICPM_TOKENS = {"image_token": "<unk>", "video_token": "<video>", "image_start_token": "<image>",
                  "image_end_token": "</image>", "slice_start_token": "<slice>", "slice_end_token": "</slice>",
                  "image_id_start_token": "<image_id>", "image_id_end_token": "</image_id>"}  # fmt: skip


def minicpmv4_6() -> Tiny:
    """MiniCPM-V 4.6 (generic adapter): a 112-px thumbnail and up to four slices, each packed as one row of 14-px
    patches; after the first vision layer, 2 x 2 windows attended and merged into one, then 2 x 2 merged again (16
    patches a token); a hybrid Qwen3.5 text model."""
    tokenizer = byte_tokenizer(["<|im_start|>", "<|im_end|>"], MINICPM_TOKENS)
    config = tf.MiniCPMV4_6Config(
        vision_config=vision_tower(112, 14),
        text_config=dict(model_type="qwen3_5_text", **text_config(len(tokenizer), head_dim=16, **HYBRID)),
        image_token_id=tokenizer.image_token_id,
        video_token_id=tokenizer.video_token_id,
        insert_layer_id=0,
        image_size=112,
    )
    image_processor = tf.MiniCPMV4_6ImageProcessorPil(scale_resolution=112, max_slice_nums=4, patch_size=14)
    processor = image_only(tf.MiniCPMV4_6Processor)(image_processor=image_processor, tokenizer=tokenizer)
    return Tiny(tf.MiniCPMV4_6ForConditionalGeneration(config).eval(), processor, "<unk>")


def idefics2() -> Tiny:
    """Idefics2 (generic adapter): a perceiver resampler turns each image into 4 latents that see all of it."""
    tokenizer = byte_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>"])
    perceiver = dict(hidden_size=64, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                     resampler_head_dim=16, num_key_value_heads=1)  # fmt: skip
    config = tf.Idefics2Config(
        vision_config=vision_tower(64, 16),
        perceiver_config=perceiver,
        text_config=dict(model_type="mistral", **text_config(len(tokenizer))),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    image_processor = tf.Idefics2ImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 64},
                                                   do_image_splitting=False)  # fmt: skip
    processor = tf.Idefics2Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4)
    return Tiny(tf.Idefics2ForConditionalGeneration(config).eval(), processor, "<image>")


BUILDERS: dict[str, Callable[[], Tiny]] = {
    "qwen2_vl": qwen2_vl,
    "qwen2_5_vl": qwen2_5_vl,
    "qwen3_vl": qwen3_vl,
    "internvl": internvl,
    "llava": llava,
    "smolvlm": smolvlm,
    "idefics3": idefics3,
    "gemma3": gemma3,
    "paligemma": paligemma,
    "paligemma2": paligemma2,
    "pixtral": pixtral,
    "mistral3": mistral3,
    "llava_next": llava_next,
    "llava_onevision": llava_onevision,
    "qwen3_vl_moe": qwen3_vl_moe,
    "glm4v": glm4v,
    "glm4v_moe": glm4v_moe,
    "glm46v": glm46v,
    "qwen3_5": qwen3_5,
    "qwen3_5_moe": qwen3_5_moe,
    "mllama": mllama,
    "gemma4": gemma4,
    "gemma4_moe": gemma4_moe,
    "aya_vision": aya_vision,
    "lighton_ocr": lighton_ocr,
    "llava_onevision1_5": llava_onevision1_5,
    "paddleocr_vl": paddleocr_vl,
    "ovis2": ovis2,
    "hunyuan_vl": hunyuan_vl,
    "minicpmv4_6": minicpmv4_6,
    "got_ocr2": got_ocr2,
    "deepseek_ocr2": deepseek_ocr2,
    "granite4_vision": granite4_vision,
    "idefics2": idefics2,
}


def build_tiny(family: str, seed: int = 0) -> Tiny:
    """A tiny random model and processor of `family` (one of FAMILIES), with seeded weights."""
    torch.manual_seed(seed)
    return BUILDERS[family]()
