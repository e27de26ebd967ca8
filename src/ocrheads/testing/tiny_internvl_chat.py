"""A tiny random checkpoint in the remote-code InternVL layout (`internvl_chat`), written from the published facts.

The paper's InternVL2-8B exists only in this layout; this folder has its files and names at toy sizes, so
`ocrheads convert`, its cache and every path after it run offline: config.json with `auto_map`, safetensors
with the original tensor names (InternLM2's fused `wqkv` in its grouped block layout), a sentencepiece BPE
`tokenizer.model` trained here with the chat specials at the end of its vocabulary, the nine InternVL tokens
after it, and a conversation.py that holds the internlm2-chat template (../shared/INTERNVL2.md).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import sentencepiece
import torch
from faker import Faker
from safetensors.torch import save_file
from sentencepiece import sentencepiece_model_pb2

CHAT_SPECIALS = ["<|plugin|>", "<|interpreter|>", "<|action_end|>", "<|action_start|>", "<|im_end|>", "<|im_start|>"]
INTERNVL_TOKENS = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
SYSTEM_MESSAGE = (  # a Chinese system message like the internlm2-chat template's, with a full-width comma
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型\uff0c英文名叫InternVL, 是一个有用无害的人工智能助手。"
)
CONVERSATION_PY = f'''"""Conversation templates in the layout of InternVL's conversation.py (what conversion reads)."""


def register_conv_template(template):
    return template


class SeparatorStyle:
    MPT = "mpt"


class Conversation:
    def __init__(self, **fields):
        self.fields = fields


register_conv_template(
    Conversation(
        name="internlm2-chat",
        system_template="<|im_start|>system\\n{{system_message}}",
        system_message={SYSTEM_MESSAGE!r},
        roles=("<|im_start|>user\\n", "<|im_start|>assistant\\n"),
        sep_style=SeparatorStyle.MPT,
        sep="<|im_end|>",
        stop_token_ids=[2, 92543, 92542],
    )
)
'''


@dataclass(frozen=True)
class Shape:
    """Sizes of the tiny model; the defaults have 2 query heads per key/value head and 4 image tokens per tile."""

    vision_width: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    tile: int = 56
    patch: int = 14
    text_width: int = 64
    text_layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    max_tiles: int = 6
    vision_norm: str = "layer_norm"  # InternViT-300M; "rms_norm" with q/k norms is InternViT-6B
    sp_vocab: int = 384


def train_tokenizer(vocab_size: int, add_dummy_prefix: bool) -> sentencepiece_model_pb2.ModelProto:
    """A byte-fallback BPE sentencepiece model learnt from seeded prose, with InternLM2's chat specials appended
    as user-defined pieces, so they are the last ids of the sentencepiece vocabulary."""
    fake = Faker("en_US")
    fake.seed_instance(0)
    lines = [fake.sentence(nb_words=12) for _ in range(400)]
    lines += [f"The pass key is {n:05d}." for n in range(0, 99999, 997)]
    written = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=written,
        model_type="bpe",
        vocab_size=vocab_size - len(CHAT_SPECIALS),
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=add_dummy_prefix,
        remove_extra_whitespaces=False,
        split_digits=True,
        num_threads=1,
        minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(written.getvalue())
    for special in CHAT_SPECIALS:
        proto.pieces.add(piece=special, score=0.0, type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
    return proto


def _tokenizer_config(sp_size: int) -> dict:
    def entry(content: str) -> dict:
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                "special": True}  # fmt: skip

    decoder = {"0": entry("<unk>"), "1": entry("<s>"), "2": entry("</s>")}
    start = sp_size - len(CHAT_SPECIALS)
    decoder |= {str(start + i): entry(token) for i, token in enumerate(CHAT_SPECIALS)}
    decoder |= {str(sp_size + i): entry(token) for i, token in enumerate(INTERNVL_TOKENS)}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "</s>",
        "unk_token": "<unk>",
        "tokenizer_class": "InternLM2Tokenizer",
        "model_max_length": 8192,
    }


def _config(shape: Shape, vocab: int, dtype: str) -> dict:
    rms = shape.vision_norm == "rms_norm"
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": {
            "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
            "AutoModel": "modeling_internvl_chat.InternVLChatModel",
        },
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "select_layer": -1,
        "ps_version": "v2",
        "template": "internlm2-chat",
        "force_image_size": shape.tile,
        "dynamic_image_size": True,
        "use_thumbnail": True,
        "min_dynamic_patch": 1,
        "max_dynamic_patch": shape.max_tiles,
        "torch_dtype": dtype,
        "vision_config": {
            "model_type": "intern_vit_6b",
            "architectures": ["InternVisionModel"],
            "hidden_size": shape.vision_width,
            "intermediate_size": 2 * shape.vision_width,
            "num_attention_heads": shape.vision_heads,
            "num_hidden_layers": shape.vision_layers,
            "image_size": shape.tile,
            "patch_size": shape.patch,
            "num_channels": 3,
            "qkv_bias": not rms,
            "qk_normalization": rms,
            "norm_type": shape.vision_norm,
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "use_flash_attn": True,
            "drop_path_rate": 0.0,
        },
        "llm_config": {
            "model_type": "internlm2",
            "architectures": ["InternLM2ForCausalLM"],
            "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config"},
            "attn_implementation": "flash_attention_2",
            "vocab_size": vocab,
            "hidden_size": shape.text_width,
            "intermediate_size": shape.intermediate,
            "num_hidden_layers": shape.text_layers,
            "num_attention_heads": shape.heads,
            "num_key_value_heads": shape.kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-5,
            "rope_theta": 1000000,
            "rope_scaling": {"type": "dynamic", "factor": 2.0},
            "bias": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 2,
            "tie_word_embeddings": False,
        },
    }


def _weights(shape: Shape, vocab: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Every tensor under its original name; scales large enough that a misplaced row moves logits by units."""

    def normal(*size: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*size, generator=generator) * scale

    def around_one(size: int) -> torch.Tensor:
        return 1 + normal(size, scale=0.2)

    c, h, hd = shape.vision_width, shape.text_width, shape.text_width // shape.heads
    grid = shape.tile // shape.patch
    rms = shape.vision_norm == "rms_norm"
    weights = {
        "vision_model.embeddings.class_embedding": normal(1, 1, c),
        "vision_model.embeddings.position_embedding": normal(1, 1 + grid * grid, c),
        "vision_model.embeddings.patch_embedding.weight": normal(c, 3, shape.patch, shape.patch, scale=0.05),
        "vision_model.embeddings.patch_embedding.bias": normal(c),
    }
    for i in range(shape.vision_layers):
        layer = f"vision_model.encoder.layers.{i}."
        weights |= {
            f"{layer}attn.qkv.weight": normal(3 * c, c),
            f"{layer}attn.proj.weight": normal(c, c),
            f"{layer}attn.proj.bias": normal(c),
            f"{layer}mlp.fc1.weight": normal(2 * c, c),
            f"{layer}mlp.fc1.bias": normal(2 * c),
            f"{layer}mlp.fc2.weight": normal(c, 2 * c),
            f"{layer}mlp.fc2.bias": normal(c),
            f"{layer}norm1.weight": around_one(c),
            f"{layer}norm2.weight": around_one(c),
            f"{layer}ls1": around_one(c),
            f"{layer}ls2": around_one(c),
        }
        if rms:
            weights |= {f"{layer}attn.q_norm.weight": around_one(c), f"{layer}attn.k_norm.weight": around_one(c)}
        else:
            weights |= {f"{layer}attn.qkv.bias": normal(3 * c), f"{layer}norm1.bias": normal(c),
                        f"{layer}norm2.bias": normal(c)}  # fmt: skip
    weights |= {
        "mlp1.0.weight": around_one(4 * c),
        "mlp1.0.bias": normal(4 * c),
        "mlp1.1.weight": normal(h, 4 * c),
        "mlp1.1.bias": normal(h),
        "mlp1.3.weight": normal(h, h),
        "mlp1.3.bias": normal(h),
        "language_model.model.tok_embeddings.weight": normal(vocab, h, scale=1.0),
        "language_model.model.norm.weight": around_one(h),
        "language_model.output.weight": normal(vocab, h),
    }
    for i in range(shape.text_layers):
        layer = f"language_model.model.layers.{i}."
        weights |= {
            f"{layer}attention.wqkv.weight": normal((shape.heads + 2 * shape.kv_heads) * hd, h),
            f"{layer}attention.wo.weight": normal(h, h),
            f"{layer}feed_forward.w1.weight": normal(shape.intermediate, h),
            f"{layer}feed_forward.w3.weight": normal(shape.intermediate, h),
            f"{layer}feed_forward.w2.weight": normal(h, shape.intermediate),
            f"{layer}attention_norm.weight": around_one(h),
            f"{layer}ffn_norm.weight": around_one(h),
        }
    return weights


def write_tiny_internvl_chat(
    folder: str | Path,
    shape: Shape = Shape(),
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    shards: int = 1,
    add_dummy_prefix: bool = True,
) -> Path:
    """Write the checkpoint into `folder` (`shards` > 1 writes sharded safetensors and their index)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    proto = train_tokenizer(shape.sp_vocab, add_dummy_prefix)
    (folder / "tokenizer.model").write_bytes(proto.SerializeToString())
    sp_size = len(proto.pieces)
    vocab = sp_size + len(INTERNVL_TOKENS)
    (folder / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(sp_size), indent=2, ensure_ascii=False))
    dtype_name = str(dtype).removeprefix("torch.")
    (folder / "config.json").write_text(json.dumps(_config(shape, vocab, dtype_name), indent=2))
    (folder / "conversation.py").write_text(CONVERSATION_PY, encoding="utf-8")
    generator = torch.Generator().manual_seed(seed)
    weights = {name: tensor.to(dtype) for name, tensor in _weights(shape, vocab, generator).items()}
    names = list(weights)
    if shards == 1:
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        return folder
    weight_map = {}
    for index in range(shards):
        part = names[index::shards]
        file = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        save_file({name: weights[name] for name in part}, folder / file, metadata={"format": "pt"})
        weight_map |= dict.fromkeys(part, file)
    index = {"metadata": {"total_size": sum(t.nbytes for t in weights.values())}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return folder
