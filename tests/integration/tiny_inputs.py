"""Inputs for the tiny models: padded two-sample batches with images, and pages with one solid glyph."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ocrheads.data.fonts import load_font
from ocrheads.data.generate import generate
from ocrheads.devices import model_device, to_device
from ocrheads.heads import LINEAR, layer_kinds_of
from ocrheads.models import ModelAdapter, adapter_class
from ocrheads.testing.tiny import Tiny, build_tiny
from ocrheads.testing.virtual_devices import place

# cuda: the same tests then check a GPU; virtual: they check the GPU paths on the CPU (tests/conftest.py)
TEST_DEVICE = os.environ.get("OCRHEADS_TEST_DEVICE", "cpu")
LOAD_DEVICE = "cpu" if TEST_DEVICE == "virtual" else TEST_DEVICE  # --device: a loaded model is placed after loading
# For tests that place a CPU model on virtual GPUs of their own: under the virtual mode (or on a GPU) they cannot nest
on_the_cpu = pytest.mark.skipif(TEST_DEVICE != "cpu", reason="places a CPU model on virtual GPUs of its own")
BLOCK = "\u2588"  # a glyph whose ink fills its box, so "tokens that see the box" and "tokens with ink" coincide


def page(width: int, height: int, text: str) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((4, 4), text, fill="black")
    return image


def padded_batch(tiny: Tiny) -> dict[str, torch.Tensor]:
    """Two prompts of different lengths, left-padded as for generation, each with one page image (without the
    training labels PaliGemma's processor adds)."""
    tiny.processor.tokenizer.padding_side = "left"
    texts = [f"{tiny.image_placeholder}What is the pass key?", f"{tiny.image_placeholder}Key?"]
    images = [[page(120, 80, "12345")], [page(96, 64, "678")]]
    try:
        batch = tiny.processor(text=texts, images=images, padding=True, return_tensors="pt")
    except ValueError:  # GOT-OCR2's processor takes the batch's pages as one list
        batch = tiny.processor(text=texts, images=[one for item in images for one in item], padding=True,
                               return_tensors="pt")  # fmt: skip
    batch.pop("labels", None)
    return to_device(dict(batch), model_device(tiny.model))


# PaliGemma's written tokens are its causal suffix, token type 1 (its generate appends ones); every other family's
# written text is type 0.
WRITTEN_TOKEN_TYPE = {"paligemma": 1}


def attention_layers(model) -> list[int]:
    """The layers with attention weights, whose rows eager attention returns, in order (a hybrid's linear-attention
    layers return none)."""
    return [layer for layer, kind in enumerate(layer_kinds_of(model.config)) if kind != LINEAR]


def extend_for(
    batch: dict[str, torch.Tensor], sequences: torch.Tensor, model_type: str = ""
) -> dict[str, torch.Tensor]:
    """The same batch with generated tokens appended: attended, of the type written text has in `model_type`."""
    extra = sequences.shape[1] - batch["input_ids"].shape[1]
    extended = dict(batch, input_ids=sequences)
    values = {"attention_mask": 1, "mm_token_type_ids": 0, "token_type_ids": WRITTEN_TOKEN_TYPE.get(model_type, 0)}
    for name, value in values.items():
        if name in batch:
            added = torch.full((batch[name].shape[0], extra), value, dtype=batch[name].dtype, device=batch[name].device)
            extended[name] = torch.cat([batch[name], added], 1)
    if "cross_attention_mask" in batch:  # Mllama's (batch, T, images, tiles): generate repeats the last row
        crossed = batch["cross_attention_mask"]
        extended["cross_attention_mask"] = torch.cat([crossed] + [crossed[:, -1:]] * extra, 1)
    return extended


def on_test_device(model: torch.nn.Module) -> torch.nn.Module:
    """The model on the test device (OCRHEADS_TEST_DEVICE, default cpu; virtual: labelled cuda:0, on the CPU)."""
    if TEST_DEVICE == "virtual":
        place(model, "single")
        return model
    return model.to(TEST_DEVICE)


def tiny_model(family: str) -> Tiny:
    """A tiny random model of `family` on the test device."""
    tiny = build_tiny(family)
    on_test_device(tiny.model)
    return tiny


def tiny_adapter(family: str) -> ModelAdapter:
    tiny = tiny_model(family)
    return adapter_class(tiny.model.config)(tiny.model, tiny.processor)


def render_block(width: int, height: int, x: int, y: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A white page with one solid block glyph at (x, y), and the glyph's exact ink box."""
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((x, y), BLOCK, font=load_font("dejavu-sans", 16).face, fill="black")
    ys, xs = np.nonzero(np.asarray(image.convert("L")) < 255)
    return image, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def glyph_pages(adapter: ModelAdapter, sizes, trials: int, render=None):
    """Per page size, `trials` pages with a glyph at spread places, each encoded alone: (size, trial, the glyph's ink
    box, the batch, the page's image tokens)."""
    render = render or render_block
    for width, height in sizes:
        for trial in range(trials):
            image, box = render(width, height, trial * 53 % (width - 13), trial * 37 % (height - 23))
            batch = adapter.encode([adapter.prompt("Read it.", 1)], [[image]])
            [[tokens]] = adapter.image_tokens(batch, [[image.size]])
            yield (width, height), trial, box, batch, tokens


def mixed_passkeys(folder: Path) -> tuple[list, list[list[Image.Image]], list]:
    """Passkeys of two lengths as pages and as text under `folder`: (image samples, their pages, text samples), what
    the device checks score with every kind."""
    common = dict(n=2, lengths=(120, 200), digits=3, seed=3, progress=False)
    images = generate("passkey", folder / "image", **common)
    texts = generate("passkey", folder / "text", modality="text", **common)
    pages = [[Image.open(folder / "image" / name).convert("RGB") for name in sample.pages] for sample in images]
    return images, pages, texts
