"""Box -> token geometry for the tiling and cropping families, against the truth read from pixel_values.

Each tile's pixels come back from the processor as one square frame; a token of a tile sees an equal block
of its frame. A token "has ink" when its block holds a dark pixel. Tiles whose frame is an unresampled copy
of their region must match exactly; resampled tiles may blur edges, so there every mostly-inked token must
be found and every found token must hold some ink.
"""

import tempfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ocrheads.geometry import box_tokens
from ocrheads.models import adapter_class, checkpoint_config, load_adapter
from ocrheads.models.convert import convert
from ocrheads.models.gemma3 import pan_and_scan_crops
from ocrheads.testing.tiny_internvl_chat import write_tiny_internvl_chat

from .tiny_inputs import LOAD_DEVICE, on_test_device, render_block, tiny_adapter, tiny_model

SIZES = {
    "internvl": [(56, 56), (112, 56), (168, 112), (200, 90), (90, 250), (333, 77)],
    "internvl_chat": [(56, 56), (112, 56), (168, 112), (200, 90), (90, 250), (333, 77)],
    "internvl_paper": [(56, 56), (112, 56), (168, 112), (200, 90), (90, 250), (333, 77)],
    "llava": [(56, 56), (56, 80), (80, 56), (100, 70), (70, 130), (300, 200)],
    "smolvlm": [(128, 128), (128, 64), (64, 128), (200, 90), (90, 250), (333, 77)],
    "idefics3": [(128, 128), (128, 64), (64, 128), (200, 90), (90, 250), (333, 77)],
    "gemma3": [(64, 64), (100, 70), (70, 130), (300, 200)],
    "gemma3_pan_and_scan": [(64, 64), (300, 64), (64, 250), (40, 40), (129, 32), (100, 64), (500, 120)],
    "paligemma": [(64, 64), (200, 64), (64, 200), (30, 30), (300, 200)],
    "pixtral": [(64, 64), (48, 32), (100, 40), (40, 100), (20, 20), (300, 200)],
    "mistral3": [(128, 128), (96, 64), (200, 80), (80, 200), (20, 20), (500, 300)],
}
VARIANTS = {  # a family with pixel options that change its geometry: (family, pixel options)
    "gemma3_pan_and_scan": ("gemma3", {"do_pan_and_scan": True, "pan_and_scan_min_crop_size": 32}),
}


@cache
def _adapter(family: str):
    """A tiny model of `family` on the test device; internvl_chat is a remote-code InternVL checkpoint converted to
    native (the original tiling and ImageNet normalisation), loaded by its adapter rather than load_adapter, which
    the virtual mode places for the test that loads it only (the cached model outlives that test); internvl_paper
    is that checkpoint in the paper's prompt format (every page's tiles in one <img> block)."""
    if family in VARIANTS:
        base, pixels = VARIANTS[family]
        tiny = tiny_model(base)
        return adapter_class(tiny.model.config)(tiny.model, tiny.processor, pixels)
    if family not in ("internvl_chat", "internvl_paper"):
        return tiny_adapter(family)
    prompt_format = "paper" if family == "internvl_paper" else "chat"
    with tempfile.TemporaryDirectory(prefix="internvl-chat-") as root:
        native = convert(write_tiny_internvl_chat(Path(root) / "remote"), Path(root) / "native")
        adapter = adapter_class(checkpoint_config(native)).load(native, prompt_format=prompt_format)
    on_test_device(adapter.model)
    return adapter


def _frames(batch) -> torch.Tensor:
    """Every tile frame of the (single-item) batch, (frames, 3, H, W), in token order (a host copy: the batch is on
    the model's device)."""
    pixels = batch["pixel_values"].cpu()
    return pixels.reshape(-1, *pixels.shape[-3:])


def _darkness(adapter, frame, rows, cols) -> torch.Tensor:
    """Per token of a rows x cols tile: its darkest pixel, 0 white to 1 black."""
    processor = adapter.processor.image_processor
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    white, black = (1 - mean) / std, (0 - mean) / std
    dark = ((frame - white) / (black - white)).mean(0)
    height, width = dark.shape
    return dark.view(rows, height // rows, cols, width // cols).amax((1, 3)).flatten()


def _unresampled(tile, frame) -> bool:
    x0, y0, x1, y1 = tile.region
    return all(float(v).is_integer() for v in tile.region) and (x1 - x0, y1 - y0) == tuple(frame.shape[-1:-3:-1])


@pytest.mark.parametrize("family", sorted(SIZES))
def test_box_tokens_equal_the_tokens_whose_pixels_hold_ink(family):
    adapter = _adapter(family)
    counts = {"exact": 0, "resampled": 0}
    for width, height in SIZES[family]:
        for trial in range(6):
            image, box = render_block(width, height, trial * 53 % (width - 13), trial * 37 % (height - 23))
            batch = adapter.encode([adapter.prompt("Read it.", 1)], [[image]])
            [[tokens]] = adapter.image_tokens(batch, [[image.size]])
            frames = _frames(batch)
            assert len(frames) == len(tokens.tiles)
            found = set(box_tokens(box, tokens))
            # each tile's cells are the next image tokens of input_ids, row-major: the truth never reads the adapter's
            # token positions, only its tiles' grids
            ids = batch["input_ids"][0].cpu()
            image_positions = torch.nonzero(ids == adapter.model.config.image_token_id).flatten().tolist()
            assert found <= set(image_positions), "a token that is not an image token (a newline, a break) was found"
            image_tokens = iter(image_positions)
            for tile, frame in zip(tokens.tiles, frames, strict=True):
                cells = [next(image_tokens) for _ in range(tile.token_count)]
                darkness = _darkness(adapter, frame, tile.rows, tile.cols)
                any_ink = {cells[int(k)] for k in torch.nonzero(darkness > 1e-3).flatten()}
                mostly_ink = {cells[int(k)] for k in torch.nonzero(darkness >= 0.5).flatten()}
                in_tile = found & set(cells)
                where = (width, height, trial, tile)
                if _unresampled(tile, frame):
                    assert in_tile == any_ink, where
                    counts["exact"] += 1
                else:
                    assert mostly_ink <= in_tile <= any_ink, where
                    counts["resampled"] += 1
    assert counts["exact"] >= 6 and counts["resampled"] >= 18, counts


@pytest.mark.parametrize("family", sorted(SIZES))
def test_two_images_cover_exactly_the_image_tokens(family):
    adapter = _adapter(family)
    pages = [Image.new("RGB", SIZES[family][1], "white"), Image.new("RGB", SIZES[family][-1], "white")]
    batch = adapter.encode([adapter.prompt("Which page?", 2)], [pages])
    [images] = adapter.image_tokens(batch, [[p.size for p in pages]])
    expected = torch.nonzero(batch["input_ids"][0] == adapter.model.config.image_token_id).flatten().tolist()
    assert [p for image in images for p in image.positions()] == expected
    assert [image.size for image in images] == [p.size for p in pages]


def test_pixel_shuffle_keeps_each_tile_row_major():
    """Token k of a tile merges the 2x2 patches under grid cell k (InternVL and Idefics3 connectors)."""
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    patches = torch.stack([rows, cols], -1)  # a 4x4 patch grid whose features are their own coordinates
    internvl = tiny_adapter("internvl").model.model.pixel_shuffle(patches[None], scale_factor=0.5)
    idefics = tiny_adapter("idefics3").model.model.connector.pixel_shuffle(patches.view(1, 16, 2), 2)
    for merged in (internvl.reshape(4, 4, 2), idefics.reshape(4, 4, 2)):
        for token in range(4):
            cell_rows, cell_cols = merged[token, :, 0], merged[token, :, 1]
            assert set(cell_rows.tolist()) == {2 * (token // 2), 2 * (token // 2) + 1}
            assert set(cell_cols.tolist()) == {2 * (token % 2), 2 * (token % 2) + 1}


@pytest.mark.parametrize("family", sorted(SIZES))
def test_checkpoint_folders_load_offline_with_their_processor_settings(family, tmp_path):
    adapter = _adapter(family)
    adapter.model.save_pretrained(tmp_path)
    adapter.processor.save_pretrained(tmp_path)
    loaded = load_adapter(tmp_path, dtype=torch.float32, device=LOAD_DEVICE, prompt_format=adapter.prompt_format,
                          **adapter.pixels)  # fmt: skip
    assert type(loaded) is type(adapter)
    page = Image.new("RGB", SIZES[family][3], "white")
    batch = loaded.encode([loaded.prompt("q", 1)], [[page]])
    assert torch.equal(batch["input_ids"], adapter.encode([adapter.prompt("q", 1)], [[page]])["input_ids"])
    with torch.no_grad():
        assert torch.equal(loaded.model(**batch).logits, adapter.model(**batch).logits)


def test_internvl_tiles_as_its_processor_does_whatever_the_image_processor_config_says():
    """InternVLProcessor asks for crops by default, over an image processor config whose crop_to_patches is off."""
    adapter = tiny_adapter("internvl")
    adapter.processor.image_processor.crop_to_patches = False
    page = Image.new("RGB", (112, 56), "white")
    batch = adapter.encode([adapter.prompt("q", 1)], [[page]])
    [[tokens]] = adapter.image_tokens(batch, [[page.size]])
    assert len(tokens.tiles) == len(_frames(batch)) == 3  # two crops and the thumbnail


@pytest.mark.parametrize(
    "settings",
    [
        {"pan_and_scan_min_crop_size": 32, "pan_and_scan_max_num_crops": 4, "pan_and_scan_min_ratio_to_activate": 1.2},
        {"pan_and_scan_min_crop_size": 256, "pan_and_scan_max_num_crops": 3, "pan_and_scan_min_ratio_to_activate": 1.5},
    ],
)
def test_pan_and_scan_crops_are_the_ones_the_image_processor_cuts(settings):
    """The image processor's own pan_and_scan, on pages whose pixels hold their own coordinates."""
    image_processor = tiny_adapter("gemma3").processor.image_processor
    sizes = [(129, 32), (97, 32), (300, 64), (64, 250), (1000, 300), (300, 1001), (777, 256), (640, 480), (300, 280)]
    cropped = 0
    for width, height in sizes:
        coded = np.stack(np.indices((height, width)))  # channel 0: the row, channel 1: the column
        crops = image_processor.pan_and_scan(coded, **settings)
        cut = [(int(c[1, 0, 0]), int(c[0, 0, 0]), int(c[1, 0, -1]) + 1, int(c[0, -1, 0]) + 1) for c in crops]
        assert pan_and_scan_crops((width, height), settings | {"do_pan_and_scan": True}) == cut, (width, height)
        cropped += bool(cut)
    assert 3 <= cropped < len(sizes)
