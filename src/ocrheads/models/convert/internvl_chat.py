"""The remote-code InternVL layout (`internvl_chat`: InternViT + `mlp1` + InternLM2) as native InternVL.

InternVL 1.5 / 2 / 2.5 checkpoints such as the paper's OpenGVLab/InternVL2-8B load only with their own remote
code; transformers' native InternVL is the same network with a Llama text model. Everything here is written
from the published layout (../shared/INTERNVL2.md): config fields, tensor names, how InternLM2 packs q, k and v,
and the prompt the original `chat()` builds.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers as tf

from ocrheads.errors import OcrHeadsError

MODEL_TYPE = "internvl_chat"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VISION_QK_NORM_EPS = 1e-6  # native InternVL's q/k norms have this eps fixed; InternViT-6B's use layer_norm_eps
ROPE_TYPES = {"dynamic": "dynamic", "linear": "linear"}  # InternLM2 rope_scaling type -> transformers rope_type

Take = Callable[[torch.Tensor], torch.Tensor]


def _refuse(source: str, what: str) -> OcrHeadsError:
    return OcrHeadsError(f"{source}: {what}; native InternVL cannot express it, so this checkpoint is not converted")


def native_config(raw: dict, image_token_id: int, source: str) -> tf.InternVLConfig:
    """The native config of a remote-layout `config.json` (`raw`); anything native InternVL would compute
    differently is refused by name rather than converted into a different model."""
    llm, vision = raw["llm_config"], raw["vision_config"]
    llm_type = llm.get("model_type") or (llm.get("architectures") or ["?"])[0]
    if llm_type != "internlm2":
        raise _refuse(source, f"its language model is {llm_type!r}; only InternLM2 language models are converted")
    if raw.get("ps_version", "v1") != "v2":
        raise _refuse(source, f"pixel shuffle {raw.get('ps_version', 'v1')!r} (the transposed v1 layout)")
    if raw.get("dynamic_image_size") and not raw.get("use_thumbnail"):
        raise _refuse(source, "dynamic tiles without a thumbnail")
    if vision.get("qk_normalization") and vision.get("layer_norm_eps", 1e-6) != VISION_QK_NORM_EPS:
        raise _refuse(source, f"vision q/k norms with eps {vision['layer_norm_eps']}")
    patch, ratio = vision["patch_size"], raw.get("downsample_ratio", 0.5)
    vision_config = dict(
        hidden_size=vision["hidden_size"],
        intermediate_size=vision["intermediate_size"],
        num_hidden_layers=vision["num_hidden_layers"],
        num_attention_heads=vision["num_attention_heads"],
        attention_bias=vision.get("qkv_bias", True),
        use_qk_norm=vision.get("qk_normalization", False),
        norm_type=vision.get("norm_type", "rms_norm"),
        layer_norm_eps=vision.get("layer_norm_eps", 1e-6),
        hidden_act=vision.get("hidden_act", "gelu"),
        image_size=vision["image_size"],
        patch_size=patch,
        num_channels=vision.get("num_channels", 3),
        use_mean_pooling=True,  # makes the final norm an identity: InternViT has none
    )
    return tf.InternVLConfig(
        vision_config=vision_config,
        text_config=_text_config(llm, source),
        image_token_id=image_token_id,
        image_seq_length=image_seq_length(raw),
        downsample_ratio=ratio,
        vision_feature_layer=raw.get("select_layer", -1),
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
        dtype=raw.get("torch_dtype") or llm.get("torch_dtype"),
    )


def _text_config(llm: dict, source: str) -> dict:
    rope = {"rope_type": "default", "rope_theta": llm.get("rope_theta", 10000.0)}
    scaling = llm.get("rope_scaling")
    if scaling:
        kind = scaling.get("type") or scaling.get("rope_type")
        if kind not in ROPE_TYPES:
            raise _refuse(source, f"rope scaling {kind!r}")
        rope |= {"rope_type": ROPE_TYPES[kind], "factor": scaling["factor"]}
    return dict(
        model_type="llama",
        vocab_size=llm["vocab_size"],
        hidden_size=llm["hidden_size"],
        intermediate_size=llm["intermediate_size"],
        num_hidden_layers=llm["num_hidden_layers"],
        num_attention_heads=llm["num_attention_heads"],
        num_key_value_heads=llm.get("num_key_value_heads") or llm["num_attention_heads"],
        hidden_act=llm.get("hidden_act", "silu"),
        max_position_embeddings=llm.get("max_position_embeddings", 2048),
        rms_norm_eps=llm.get("rms_norm_eps", 1e-6),
        attention_bias=llm.get("bias", False),
        mlp_bias=False,
        tie_word_embeddings=False,
        rope_parameters=rope,
        bos_token_id=llm.get("bos_token_id", 1),
        eos_token_id=llm.get("eos_token_id", 2),
        pad_token_id=llm.get("pad_token_id", 2),
    )


def tile_size(raw: dict) -> int:
    return raw.get("force_image_size") or raw["vision_config"]["image_size"]


def image_seq_length(raw: dict) -> int:
    """Tokens per tile: computed, not stored ((tile / patch)^2 x downsample_ratio^2)."""
    side = tile_size(raw) // raw["vision_config"]["patch_size"]
    return round(side * side * raw.get("downsample_ratio", 0.5) ** 2)


def image_processor(raw: dict) -> tf.GotOcr2ImageProcessorPil:
    """The original tiling: square tiles of the tile size, min..max tiles, the thumbnail last, bicubic resizes,
    ImageNet normalisation."""
    side = tile_size(raw)
    return tf.GotOcr2ImageProcessorPil(
        size={"height": side, "width": side},
        crop_to_patches=bool(raw.get("dynamic_image_size", False)),
        min_patches=raw.get("min_dynamic_patch", 1),
        max_patches=raw.get("max_dynamic_patch", 12),
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )


@dataclass(frozen=True)
class Renamed:
    """A native tensor made from one source tensor."""

    name: str
    shape: tuple[int, ...]
    take: Take


VISION, TEXT = "model.vision_tower.", "model.language_model."
VISION_LAYER, NATIVE_VISION_LAYER = r"vision_model\.encoder\.layers\.(\d+)\.", VISION + r"encoder.layer.\1."
TEXT_LAYER, NATIVE_TEXT_LAYER = r"language_model\.model\.layers\.(\d+)\.", TEXT + r"layers.\1."
RULES = [  # (source name, native name): whole names, so nothing is renamed by accident
    (r"vision_model\.embeddings\.class_embedding", VISION + "embeddings.cls_token"),
    (r"vision_model\.embeddings\.position_embedding", VISION + "embeddings.position_embeddings"),
    (r"vision_model\.embeddings\.patch_embedding\.(\w+)", VISION + r"embeddings.patch_embeddings.projection.\1"),
    (VISION_LAYER + r"attn\.proj\.(weight|bias)", NATIVE_VISION_LAYER + r"attention.projection_layer.\2"),
    (VISION_LAYER + r"attn\.(q_norm|k_norm)\.weight", NATIVE_VISION_LAYER + r"attention.\2.weight"),
    (VISION_LAYER + r"mlp\.(fc1|fc2)\.(weight|bias)", NATIVE_VISION_LAYER + r"mlp.\2.\3"),
    (VISION_LAYER + r"norm1\.(weight|bias)", NATIVE_VISION_LAYER + r"layernorm_before.\2"),
    (VISION_LAYER + r"norm2\.(weight|bias)", NATIVE_VISION_LAYER + r"layernorm_after.\2"),
    (VISION_LAYER + r"ls1", NATIVE_VISION_LAYER + "lambda_1"),
    (VISION_LAYER + r"ls2", NATIVE_VISION_LAYER + "lambda_2"),
    (r"mlp1\.0\.(weight|bias)", r"model.multi_modal_projector.layer_norm.\1"),
    (r"mlp1\.1\.(weight|bias)", r"model.multi_modal_projector.linear_1.\1"),
    (r"mlp1\.3\.(weight|bias)", r"model.multi_modal_projector.linear_2.\1"),
    (r"language_model\.model\.tok_embeddings\.weight", TEXT + "embed_tokens.weight"),
    (r"language_model\.model\.norm\.weight", TEXT + "norm.weight"),
    (r"language_model\.output\.weight", "lm_head.weight"),
    (TEXT_LAYER + r"attention\.wo\.(weight|bias)", NATIVE_TEXT_LAYER + r"self_attn.o_proj.\2"),
    (TEXT_LAYER + r"feed_forward\.w1\.weight", NATIVE_TEXT_LAYER + "mlp.gate_proj.weight"),
    (TEXT_LAYER + r"feed_forward\.w3\.weight", NATIVE_TEXT_LAYER + "mlp.up_proj.weight"),
    (TEXT_LAYER + r"feed_forward\.w2\.weight", NATIVE_TEXT_LAYER + "mlp.down_proj.weight"),
    (TEXT_LAYER + r"attention_norm\.weight", NATIVE_TEXT_LAYER + "input_layernorm.weight"),
    (TEXT_LAYER + r"ffn_norm\.weight", NATIVE_TEXT_LAYER + "post_attention_layernorm.weight"),
]
VISION_QKV = re.compile(VISION_LAYER + r"attn\.qkv\.(weight|bias)")
TEXT_QKV = re.compile(TEXT_LAYER + r"attention\.wqkv\.(weight|bias)")
IGNORED = re.compile(r".*rotary_emb\.inv_freq")  # a recomputed buffer some checkpoints saved


def _keep(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def renamed(name: str, shape: tuple[int, ...], raw: dict) -> list[Renamed]:
    """The native tensors made from the source tensor `name` (none for an ignored buffer); an unknown name is an
    error, so no weight is ever silently dropped."""
    if IGNORED.fullmatch(name):
        return []
    if match := VISION_QKV.fullmatch(name):
        layer, kind = match.groups()
        return _split_vision_qkv(f"{VISION}encoder.layer.{layer}.attention.", kind, shape)
    if match := TEXT_QKV.fullmatch(name):
        layer, kind = match.groups()
        return _split_wqkv(f"{TEXT}layers.{layer}.self_attn.", kind, shape, raw["llm_config"])
    for pattern, native in RULES:
        if match := re.fullmatch(pattern, name):
            return [Renamed(match.expand(native), shape, _keep)]
    raise OcrHeadsError(f"tensor {name} is not part of the InternVL remote-code layout ocrheads knows; not converted")


def _split_vision_qkv(prefix: str, kind: str, shape: tuple[int, ...]) -> list[Renamed]:
    """InternViT's qkv rows are all queries, then all keys, then all values."""
    third = shape[0] // 3

    def rows(index: int) -> Take:
        return lambda tensor: tensor[index * third : (index + 1) * third].clone()

    return [Renamed(f"{prefix}{p}_proj.{kind}", (third, *shape[1:]), rows(i)) for i, p in enumerate("qkv")]


def _split_wqkv(prefix: str, kind: str, shape: tuple[int, ...], llm: dict) -> list[Renamed]:
    """InternLM2's wqkv rows come in one block per key/value head j: its g query heads, then key head j, then
    value head j (INTERNVL2.md); grouped-query attention wants all queries, all keys, all values."""
    heads = llm["num_attention_heads"]
    kv_heads = llm.get("num_key_value_heads") or heads
    group, head_dim = heads // kv_heads, llm["hidden_size"] // heads
    rest = shape[1:]

    def part(select: slice | int, rows: int) -> Take:
        return lambda tensor: tensor.reshape(kv_heads, group + 2, head_dim, *rest)[:, select].reshape(rows, *rest)

    return [
        Renamed(f"{prefix}q_proj.{kind}", (heads * head_dim, *rest), part(slice(0, group), heads * head_dim)),
        Renamed(f"{prefix}k_proj.{kind}", (kv_heads * head_dim, *rest), part(group, kv_heads * head_dim)),
        Renamed(f"{prefix}v_proj.{kind}", (kv_heads * head_dim, *rest), part(group + 1, kv_heads * head_dim)),
    ]


def conversation(folder: Path, template: str) -> dict:
    """The fields of conversation template `template` in the checkpoint's own conversation.py, read as literals
    from its syntax tree: the remote code is parsed, never run."""
    path = folder / "conversation.py"
    if not path.is_file():
        raise OcrHeadsError(f"{folder}: no conversation.py to read the {template!r} prompt template from")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Conversation"):
            continue
        fields = {keyword.arg: keyword.value for keyword in node.keywords}
        if "name" in fields and _literal(fields["name"]) == template:
            values = {key: _literal(fields[key]) for key in CONVERSATION_FIELDS if key in fields}
            return values | {"sep_style": getattr(fields.get("sep_style"), "attr", None)}
    raise OcrHeadsError(f"{path}: defines no conversation template {template!r}")


CONVERSATION_FIELDS = ("system_template", "system_message", "roles", "sep")  # what a prompt is built from


def _literal(node: ast.AST):
    """A literal's value, or None where the field is an expression (only literals are read, nothing is run)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def chat_template(conv: dict, system_message: str, source: str) -> str:
    """A Jinja chat template that writes the prompt the original `chat()` writes: the system turn, then each turn as
    role prefix + content + separator (InternVL's MPT style: no newline after the separator), and the
    assistant's prefix. Each image is `<IMG_CONTEXT>` + newline, which the processor expands to the image's
    `<img>...</img>` span: one image gives chat()'s own `<image>\\n{question}`."""
    if conv.get("sep_style") != "MPT":
        raise _refuse(source, f"prompt separator style {conv.get('sep_style')!r} (only MPT is converted)")
    if not (isinstance(conv.get("roles"), tuple | list) and isinstance(conv.get("sep"), str)):
        raise _refuse(source, "a conversation template whose roles or separator are not written as literals")
    user, assistant = conv["roles"]

    def literal(text: str) -> str:
        return json.dumps(text, ensure_ascii=False)

    system_before, _, system_after = conv.get("system_template", "{system_message}").partition("{system_message}")
    return (
        f"{{%- set roles = {{'user': {literal(user)}, 'assistant': {literal(assistant)}}} -%}}"
        f"{{%- if messages and messages[0]['role'] == 'system' -%}}{{%- set system = messages[0]['content'] -%}}"
        f"{{%- else -%}}{{%- set system = {literal(system_message)} -%}}{{%- endif -%}}"
        f"{{{{ {literal(system_before)} + system + {literal(system_after + conv['sep'])} }}}}"
        "{%- for message in messages if message['role'] != 'system' -%}{{ roles[message['role']] }}"
        "{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
        "{%- for part in message['content'] -%}{%- if part['type'] == 'image' -%}{{ '<IMG_CONTEXT>\\n' }}"
        "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}{%- endfor -%}{%- endif -%}"
        f"{{{{ {literal(conv['sep'])} }}}}{{%- endfor -%}}"
        "{%- if add_generation_prompt -%}{{ roles['assistant'] }}{%- endif -%}"
    )
