"""What the causal estimate needs in memory on the published Qwen2-VL-2B and -7B shapes, measured without a GPU.

The estimate's forward pass keeps, for its backward pass, every layer's activations; that, and the weights, is what
decides whether a batch fits. Both are measured here: the bytes autograd keeps while `estimate` runs (every tensor
it saves, each storage once, weights left out), on slices of each shape (the published widths with 1 and 3 text
layers and a one-block vision tower, which builds no graph since no weight needs a gradient), extrapolated to the
full 28 layers; the weights of the full shape are counted on the meta device. The sample is the paper's longest
passkey (8,192 characters: 12 pages at 256 x 28 x 28 pixels, gold answer). Scoring splits every batch into passes of
at most MAX_BATCH_TOKENS padded tokens, so a pass of that many tokens is what must fit, whatever the batch size.
Not counted: the backward pass's transients (one layer's gradients at a time), which the GPU benchmark's measured
peak includes.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_causal_memory.py [--shapes 2b 7b] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import transformers as tf
from PIL import Image

from ocrheads.attention import install
from ocrheads.data.generate import generate
from ocrheads.data.manifest import read_manifest
from ocrheads.models import adapter_class
from ocrheads.scoring.answers import encode_samples, gold_ids
from ocrheads.scoring.attribution import estimate, teacher_forced
from ocrheads.scoring.options import MAX_BATCH_TOKENS
from ocrheads.testing.qwen2_vl_shapes import qwen2_vl_config, qwen2_vl_processor, qwen2_vl_shaped

SLICES, DTYPE = (1, 3), torch.bfloat16


def _shape_slice(shape: str, layers: int, device: str) -> tf.Qwen2VLForConditionalGeneration:
    config = qwen2_vl_config(shape)
    config.text_config.num_hidden_layers = layers
    config.vision_config.depth = 1
    torch.manual_seed(0)
    with torch.device(device):
        model = tf.Qwen2VLForConditionalGeneration._from_config(config, dtype=DTYPE)
    return model.eval()


def weight_bytes(shape: str) -> int:
    """The full shape's weights in bfloat16, counted on the meta device (nothing allocated)."""
    model, _ = qwen2_vl_shaped(shape, "meta", DTYPE)
    return sum(parameter.numel() * parameter.element_size() for parameter in model.parameters())


def kept_bytes(model, samples, pages) -> tuple[int, int]:
    """Bytes autograd keeps while the estimate of one batch runs (each storage once, weights left out), and the
    batch's padded tokens."""
    install(model)
    adapter = adapter_class(model.config)(model, qwen2_vl_processor())
    forced = teacher_forced(
        encode_samples(adapter, samples, pages), gold_ids(adapter, samples), adapter.written_token_types
    )
    weights = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        estimate(adapter, forced, per_token=False)
    return sum(kept.values()), forced.inputs["input_ids"].numel()


def memory_line(shape: str, samples, pages, device: str) -> str:
    (few, tokens), (many, _) = (kept_bytes(_shape_slice(shape, n, device), samples, pages) for n in SLICES)
    per_layer = (many - few) / (SLICES[1] - SLICES[0]) / tokens
    layers = qwen2_vl_config(shape).text_config.num_hidden_layers
    per_token = few / tokens + per_layer * (layers - SLICES[0])  # every layer
    weights = weight_bytes(shape)
    return (
        f"| {shape} | {tokens:,} | {per_layer / 2**10:.1f} KiB | {per_token / 2**20:.2f} MiB | "
        f"{weights / 2**30:.1f} GiB | {(weights + per_token * MAX_BATCH_TOKENS) / 2**30:.1f} GiB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["2b", "7b"], choices=["2b", "7b"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "paper"
        generate("passkey", folder, n=1, lengths=(8192,), progress=False)
        samples = read_manifest(folder)
        pages = [[Image.open(folder / page).convert("RGB") for page in s.pages] for s in samples]
        lines = [memory_line(shape, samples, pages, args.device) for shape in args.shapes]
    print(f"| shape | tokens measured | kept a token and layer | kept a token, all layers | weights | "
          f"a pass of {MAX_BATCH_TOKENS:,} tokens: weights + kept |")  # fmt: skip
    print("|---" * 6 + "|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
