"""Llama 3.2 Vision's geometry against the keys its cross-attention layers really receive.

The truth is built by the model's own code: the vision tower's output is replaced by each tile's patches' ink (in
the processor's pixels, 1 - green where red is high: the glyph is red, the canvas padding black; -1 for a tile's
CLS token, -2 for an unused tile slot), the projector and the cross-attention layer's key projection pass it
through, and its key norm records what reaches it. So the key order (image, tile slot, CLS, patches) is the model's
reshapes', never the adapter's.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutput

from ocrheads.geometry import box_tokens

from .tiny_inputs import glyph_pages, render_block, tiny_adapter

SIZES = [(56, 56), (100, 40), (40, 100), (30, 30), (150, 60), (300, 200), (60, 230), (113, 57), (250, 250)]
CLS, UNUSED = -1.0, -2.0


@pytest.fixture(scope="module")
def adapter():
    return tiny_adapter("mllama")


def key_ink(adapter, batch) -> torch.Tensor:
    """(keys,) per cross-attention key of the (single-item) batch: its patch's ink, CLS or UNUSED."""
    model = adapter.model
    processor = adapter.processor.image_processor
    patch = model.config.vision_config.patch_size
    hidden = model.config.get_text_config().hidden_size
    found = []

    def ink(module, args, kwargs, output):
        pixels, used = kwargs["pixel_values"].float(), kwargs["aspect_ratio_mask"]
        mean = torch.tensor(processor.image_mean, device=pixels.device).view(3, 1, 1)
        std = torch.tensor(processor.image_std, device=pixels.device).view(3, 1, 1)
        raw = pixels * std + mean  # 0 to 1; the canvas's padding is black, the glyph red: ink is red
        dark = torch.where(raw[..., 0, :, :] > 0.5, 1 - raw[..., 1, :, :], 0.0)
        *lead, height, width = dark.shape
        blocks = dark.view(*lead, height // patch, patch, width // patch, patch).amax((-3, -1)).flatten(-2)
        marker = torch.cat([torch.full((*lead, 1), CLS, device=pixels.device), blocks], -1)
        marker = torch.where(used[..., None].bool(), marker, UNUSED)
        features = torch.zeros(*marker.shape, output.last_hidden_state.shape[-1], device=pixels.device)
        features[..., 0] = marker
        return BaseModelOutput(last_hidden_state=features.to(output.last_hidden_state.dtype))

    cross = model.model.language_model.layers[adapter.image_key_layers()[0]].cross_attn
    hooks = [
        model.model.vision_model.register_forward_hook(ink, with_kwargs=True),
        model.model.multi_modal_projector.register_forward_hook(lambda m, args, out: args[0][..., :hidden]),
        cross.k_proj.register_forward_hook(lambda m, args, out: args[0][..., : out.shape[-1]]),
        cross.k_norm.register_forward_pre_hook(lambda m, args: found.append(args[0].detach())),  # (b, kv, keys, d)
    ]
    try:
        with torch.no_grad():
            model(**batch, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return found[0][0, 0, :, 0].float().cpu()


def red_block(width: int, height: int, x: int, y: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """render_block's glyph in red: black is what the processor pads the canvas with."""
    image, box = render_block(width, height, x, y)
    pixels = np.asarray(image).copy()
    pixels[..., 0] = 255
    return Image.fromarray(pixels), box


def _unresampled(tile) -> bool:
    x0, y0, x1, y1 = tile.region
    return all(float(v).is_integer() for v in tile.region) and (x1 - x0, y1 - y0) == tile.pixels


def test_box_keys_are_the_keys_whose_patches_hold_ink(adapter):
    counts = {"exact": 0, "resampled": 0}
    for size, trial, box, batch, tokens in glyph_pages(adapter, SIZES, 6, red_block):
        marker = key_ink(adapter, batch)
        assert len(marker) == adapter.image_key_length(batch)
        patches = {int(k) for k in torch.nonzero(marker >= 0).flatten()}
        assert set(tokens.positions()) == patches, size  # every patch key on a grid, nothing else
        assert adapter.image_key_positions(batch, 0) == {int(k) for k in torch.nonzero(marker >= CLS).flatten()}
        found = set(box_tokens(box, tokens))
        for tile in tokens.tiles:
            cells = tile.positions()
            any_ink = {k for k in cells if marker[k] > 1e-3}
            mostly_ink = {k for k in cells if marker[k] >= 0.5}
            in_tile = found & set(cells)
            where = (size, trial, tile)
            if _unresampled(tile):
                assert in_tile == any_ink, where
                counts["exact"] += 1
            else:
                assert mostly_ink <= in_tile <= any_ink, where
                counts["resampled"] += 1
    assert counts["exact"] >= 12 and counts["resampled"] >= 24, counts


def test_two_pages_fill_their_own_tile_slots(adapter):
    """Each image has max_image_tiles slots of keys whether it uses them or not: the second page's keys start after
    the first's four slots, and an unused slot's keys are on no grid."""
    pages = [Image.new("RGB", (100, 40), "white"), Image.new("RGB", (40, 100), "white")]
    batch = adapter.encode([adapter.prompt("Which page?", 2)], [pages])
    images = adapter.image_tokens(batch, [[page.size for page in pages]])[0]
    marker = key_ink(adapter, batch)
    assert [p for image in images for p in image.positions()] == torch.nonzero(marker >= 0).flatten().tolist()
    slots, per_tile = adapter.processor.image_processor.max_image_tiles, 17
    assert [len(image.tiles) for image in images] == [2, 2]
    assert images[1].tiles[0].token_start == slots * per_tile + 1
    assert (marker[2 * per_tile : slots * per_tile] == UNUSED).all()


def test_a_batch_of_pages_with_other_tilings_reads_each_item_alone(adapter):
    """Left padding moves no key: a batch item's image keys are its own images', whatever the other items hold."""
    pages = [[Image.new("RGB", (100, 40), "white")], [Image.new("RGB", (300, 200), "white")]]
    prompts = [adapter.prompt("Which page is it?", 1), adapter.prompt("?", 1)]
    batch = adapter.encode(prompts, pages)
    together = adapter.image_tokens(batch, [[p.size for p in item] for item in pages])
    for item, item_pages in enumerate(pages):
        alone = adapter.encode([prompts[item]], [item_pages])
        assert together[item] == adapter.image_tokens(alone, [[p.size for p in item_pages]])[0]
