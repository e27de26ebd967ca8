"""An independent float32 forward of the remote-code InternVL layout, written from its facts (../shared/INTERNVL2.md)
and not from our converter: it reads the original tensor names, takes q, k and v out of InternLM2's `wqkv` by
the block layout, and runs InternViT (layer scale), pixel shuffle v2, `mlp1` and InternLM2 with eager attention.
`layout="flat"` reads wqkv as all queries, then all keys, then all values: the wrong order, for a negative test.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import sentencepiece
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


@dataclass
class Reference:
    folder: Path
    layout: str = "grouped"
    config: dict = field(init=False)
    weights: dict = field(init=False)

    def __post_init__(self):
        self.config = json.loads((self.folder / "config.json").read_text())
        files = sorted(self.folder.glob("*.safetensors"))
        self.weights = {k: v.float() for f in files for k, v in load_file(f).items()}

    # vision -----------------------------------------------------------------------------------------------------
    def _norm(self, x: torch.Tensor, prefix: str) -> torch.Tensor:
        vision = self.config["vision_config"]
        w = self.weights
        if vision["norm_type"] == "rms_norm":
            return _rms(x, w[prefix + ".weight"], vision["layer_norm_eps"])
        return F.layer_norm(x, x.shape[-1:], w[prefix + ".weight"], w[prefix + ".bias"], vision["layer_norm_eps"])

    def vit(self, pixels: torch.Tensor) -> torch.Tensor:
        vision, w = self.config["vision_config"], self.weights
        patch, heads = vision["patch_size"], vision["num_attention_heads"]
        x = F.conv2d(pixels, w["vision_model.embeddings.patch_embedding.weight"],
                     w["vision_model.embeddings.patch_embedding.bias"], stride=patch)  # fmt: skip
        n, c = x.shape[:2]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([w["vision_model.embeddings.class_embedding"].expand(n, 1, c), x], dim=1)
        x = x + w["vision_model.embeddings.position_embedding"]  # tiles at the trained size: no interpolation
        tokens, head_dim = x.shape[1], c // heads
        for i in range(vision["num_hidden_layers"]):
            p = f"vision_model.encoder.layers.{i}."
            h = self._norm(x, p + "norm1")
            qkv = h @ w[p + "attn.qkv.weight"].T
            if p + "attn.qkv.bias" in w:
                qkv = qkv + w[p + "attn.qkv.bias"]
            q, k, v = qkv.reshape(n, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            if vision.get("qk_normalization"):
                eps = vision["layer_norm_eps"]
                q = _rms(q.transpose(1, 2).flatten(-2), w[p + "attn.q_norm.weight"], eps)
                k = _rms(k.transpose(1, 2).flatten(-2), w[p + "attn.k_norm.weight"], eps)
                q = q.view(n, tokens, heads, head_dim).transpose(1, 2)
                k = k.view(n, tokens, heads, head_dim).transpose(1, 2)
            attention = torch.softmax((q * head_dim**-0.5) @ k.transpose(-2, -1), dim=-1)
            out = (attention @ v).transpose(1, 2).reshape(n, tokens, c)
            out = out @ w[p + "attn.proj.weight"].T + w[p + "attn.proj.bias"]
            x = x + out * w[p + "ls1"]
            h = self._norm(x, p + "norm2")
            h = F.gelu(h @ w[p + "mlp.fc1.weight"].T + w[p + "mlp.fc1.bias"])
            x = x + (h @ w[p + "mlp.fc2.weight"].T + w[p + "mlp.fc2.bias"]) * w[p + "ls2"]
        return x

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Per tile: ViT without CLS, pixel shuffle v2, mlp1."""
        w, ratio = self.weights, self.config["downsample_ratio"]
        x = self.vit(pixels)[:, 1:]
        n, tokens, c = x.shape
        side = int(tokens**0.5)
        x = x.reshape(n, side, side, c)
        n, width, height, c = x.shape
        x = x.view(n, width, int(height * ratio), int(c / ratio)).permute(0, 2, 1, 3).contiguous()
        x = x.view(n, int(height * ratio), int(width * ratio), int(c / (ratio * ratio))).permute(0, 2, 1, 3)
        x = x.reshape(n, -1, x.shape[-1])
        x = F.layer_norm(x, x.shape[-1:], w["mlp1.0.weight"], w["mlp1.0.bias"], 1e-5)
        x = F.gelu(x @ w["mlp1.1.weight"].T + w["mlp1.1.bias"])
        return x @ w["mlp1.3.weight"].T + w["mlp1.3.bias"]

    # language model ---------------------------------------------------------------------------------------------
    def _qkv(self, h: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, ...]:
        llm = self.config["llm_config"]
        heads, kv_heads = llm["num_attention_heads"], llm["num_key_value_heads"]
        head_dim, group, t = llm["hidden_size"] // heads, heads // kv_heads, h.shape[0]
        packed = h @ weight.T
        if self.layout == "grouped":  # block j: g query heads, key head j, value head j
            blocks = packed.view(t, kv_heads, group + 2, head_dim)
            q = blocks[:, :, :group].reshape(t, heads, head_dim)
            k, v = blocks[:, :, group], blocks[:, :, group + 1]
        else:
            q = packed[:, : heads * head_dim].view(t, heads, head_dim)
            k = packed[:, heads * head_dim : (heads + kv_heads) * head_dim].view(t, kv_heads, head_dim)
            v = packed[:, (heads + kv_heads) * head_dim :].view(t, kv_heads, head_dim)
        return q, k, v

    def forward(self, input_ids: torch.Tensor, pixels: torch.Tensor | None, image_token: int):
        """Logits (T, vocab) and attention probabilities per layer (heads, T, T) of one unpadded sequence."""
        llm, w = self.config["llm_config"], self.weights
        heads, kv_heads = llm["num_attention_heads"], llm["num_key_value_heads"]
        head_dim, eps = llm["hidden_size"] // heads, llm["rms_norm_eps"]
        x = w["language_model.model.tok_embeddings.weight"][input_ids].clone()
        if pixels is not None:
            x[input_ids == image_token] = self.image_features(pixels).reshape(-1, x.shape[-1])
        t = x.shape[0]
        inv_freq = 1.0 / (llm["rope_theta"] ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(t, dtype=torch.float32), inv_freq)
        cos, sin = torch.cat([angles, angles], -1).cos()[:, None], torch.cat([angles, angles], -1).sin()[:, None]
        causal = torch.full((t, t), float("-inf")).triu(1)
        attentions = []
        for i in range(llm["num_hidden_layers"]):
            p = f"language_model.model.layers.{i}."
            q, k, v = self._qkv(_rms(x, w[p + "attention_norm.weight"], eps), w[p + "attention.wqkv.weight"])
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
            repeat = heads // kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
            scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(head_dim) + causal
            probabilities = torch.softmax(scores, dim=-1)
            attentions.append(probabilities)
            out = torch.einsum("hqk,khd->qhd", probabilities, v).reshape(t, heads * head_dim)
            x = x + out @ w[p + "attention.wo.weight"].T
            h = _rms(x, w[p + "ffn_norm.weight"], eps)
            gate, up = h @ w[p + "feed_forward.w1.weight"].T, h @ w[p + "feed_forward.w3.weight"].T
            x = x + (F.silu(gate) * up) @ w[p + "feed_forward.w2.weight"].T
        x = _rms(x, w["language_model.model.norm.weight"], eps)
        return x @ w["language_model.output.weight"].T, attentions

    def greedy(self, input_ids: torch.Tensor, pixels, image_token: int, steps: int) -> list[int]:
        ids = input_ids.clone()
        for _ in range(steps):
            logits, _ = self.forward(ids, pixels, image_token)
            ids = torch.cat([ids, logits[-1].argmax().view(1)])
        return ids[len(input_ids) :].tolist()


# the original tiling (dynamic_preprocess, build_transform) ----------------------------------------------------------
def closest_grid(width: int, height: int, tile: int, min_tiles: int, max_tiles: int) -> tuple[int, int]:
    ratios = sorted(
        {(i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1) for j in range(1, n + 1)
         if min_tiles <= i * j <= max_tiles},
        key=lambda r: r[0] * r[1],
    )  # fmt: skip
    aspect, best, best_diff = width / height, (1, 1), float("inf")
    for ratio in ratios:
        diff = abs(aspect - ratio[0] / ratio[1])
        if diff < best_diff:
            best, best_diff = ratio, diff
        elif diff == best_diff and width * height > 0.5 * tile * tile * ratio[0] * ratio[1]:
            best = ratio
    return best


def original_tiles(image: Image.Image, tile: int, min_tiles: int, max_tiles: int) -> torch.Tensor:
    """The pixel tensor the original `load_image` gives: grid tiles row-major, then a thumbnail if more than one."""
    cols, rows = closest_grid(*image.size, tile, min_tiles, max_tiles)
    resized = image.resize((tile * cols, tile * rows), Image.BICUBIC)
    tiles = [resized.crop(((i % cols) * tile, (i // cols) * tile, (i % cols + 1) * tile, (i // cols + 1) * tile))
             for i in range(cols * rows)]  # fmt: skip
    if len(tiles) > 1:
        tiles.append(image.resize((tile, tile), Image.BICUBIC))

    def transform(part: Image.Image) -> torch.Tensor:
        data = torch.frombuffer(bytearray(part.convert("RGB").tobytes()), dtype=torch.uint8)
        data = data.view(tile, tile, 3).permute(2, 0, 1).float() / 255
        return (data - IMAGENET_MEAN) / IMAGENET_STD

    return torch.stack([transform(part) for part in tiles])


# the original tokenizer (InternLM2Tokenizer: sentencepiece with added tokens) -----------------------------------------
def slow_tokenizer_ids(folder: Path, text: str) -> list[int]:
    """The ids InternLM2's slow tokenizer gives `tokenizer(text).input_ids`: <s>, then sentencepiece's own encoding
    of each stretch of text between added tokens, and the added tokens at their ids."""
    processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    added = {v["content"]: int(k) for k, v in json.loads((folder / "tokenizer_config.json").read_text())
             ["added_tokens_decoder"].items()}  # fmt: skip
    pattern = "|".join(re.escape(token) for token in sorted(added, key=len, reverse=True))
    ids, position = [added["<s>"]], 0
    for match in re.finditer(pattern, text):
        if match.start() > position:
            ids += processor.encode(text[position : match.start()])
        ids.append(added[match.group(0)])
        position = match.end()
    if position < len(text):
        ids += processor.encode(text[position:])
    return ids
