"""Gemma 4's geometry against the soft tokens its own vision tower pools and places.

The processor hands the model patches, not frames: the truth is built by the model's code. The vision encoder's
output is replaced by each patch's ink (its darkest pixel in the processor's pixels), the model's pooler averages 3 x
3 blocks by the patches' positions, the multimodal embedder passes the result through, and the text model's input
embeddings are read at the image tokens of input_ids, in order. Which token holds which block is the model's, never
the adapter's.
"""

import pytest
import torch
import transformers as tf
from PIL import Image
from transformers.modeling_outputs import BaseModelOutput

from ocrheads.geometry import box_tokens

from .tiny_inputs import glyph_pages, tiny_adapter

# pages of exactly 70 tokens of 24 px (seen unresampled), then pages scaled up or down to the budget
SIZES = [(240, 168), (168, 240), (336, 120), (100, 70), (70, 130), (300, 200), (500, 90), (40, 40), (700, 600)]


@pytest.fixture(scope="module", params=["gemma4", "gemma4_moe"])
def adapter(request):
    return tiny_adapter(request.param)


def token_ink(adapter, batch) -> torch.Tensor:
    """(image tokens,) of the single-item batch, in input_ids order: the mean ink of the patches the model pooled into
    each token."""
    model = adapter.model
    tower = model.model.vision_tower
    patch = adapter.processor.image_processor.patch_size
    text_hidden = model.config.get_text_config().hidden_size
    found = []

    def ink(module, args, kwargs, output):
        pixels = batch["pixel_values"].float().unflatten(-1, (patch * patch, 3))  # (images, patches, pixels, rgb)
        marker = (1 - pixels.mean(-1)).amax(-1)
        features = torch.zeros_like(output.last_hidden_state)
        features[..., 0] = marker.to(features.device, features.dtype)
        return BaseModelOutput(last_hidden_state=features)

    def through(module, args, kwargs, output):
        embeds = kwargs["inputs_embeds"]
        return torch.nn.functional.pad(embeds, (0, text_hidden - embeds.shape[-1]))

    hooks = [
        tower.encoder.register_forward_hook(ink, with_kwargs=True),
        model.model.embed_vision.register_forward_hook(through, with_kwargs=True),
        model.model.language_model.register_forward_pre_hook(
            lambda m, args, kwargs: found.append(kwargs["inputs_embeds"].detach()), with_kwargs=True
        ),
    ]
    try:
        with torch.no_grad():
            model(**batch, use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    ids = batch["input_ids"][0]
    scale = tower.config.hidden_size**0.5  # the pooler's scaling
    return found[0][0, ids == model.config.image_token_id, 0].float().cpu() / scale


def test_box_tokens_equal_the_pooled_tokens_that_hold_ink(adapter):
    counts = {"exact": 0, "resampled": 0}
    for size, trial, box, batch, tokens in glyph_pages(adapter, SIZES, 4):
        ink = token_ink(adapter, batch)
        positions = torch.nonzero(batch["input_ids"][0].cpu() == adapter.model.config.image_token_id).flatten()
        [tile] = tokens.tiles
        assert tile.positions() == positions.tolist()
        found = set(box_tokens(box, tokens))
        any_ink = {int(p) for p, value in zip(positions, ink, strict=True) if value > 1e-3}
        mostly_ink = {int(p) for p, value in zip(positions, ink, strict=True) if value >= 0.5}
        where = (size, trial, tile)
        if tile.pixels == size:
            assert found == any_ink, where
            counts["exact"] += 1
        else:  # resampling rounds away a glyph's last fraction of a pixel: a pixel in, a token must hold ink
            inner = set(box_tokens((box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1), tokens))
            assert mostly_ink <= found and inner <= any_ink, where
            counts["resampled"] += 1
    assert counts["exact"] >= 12 and counts["resampled"] >= 24, counts


def test_the_soft_token_budget_is_a_pixel_option(adapter):
    """max_soft_tokens reaches the processor's call: 140 tokens give a finer grid over the same page."""
    tiny = adapter.model, adapter.processor
    wider = type(adapter)(*tiny, {"max_soft_tokens": 140})
    page = Image.new("RGB", (240, 168), "white")
    grids = []
    for each in (adapter, wider):
        batch = each.encode([each.prompt("Read it.", 1)], [[page]])
        [[tokens]] = each.image_tokens(batch, [[page.size]])
        grids.append((tokens.tiles[0].rows, tokens.tiles[0].cols))
        assert int((batch["input_ids"] == adapter.model.config.image_token_id).sum()) == grids[-1][0] * grids[-1][1]
    assert grids == [(7, 10), (9, 14)]


def test_a_budget_outside_the_published_ones_is_refused():
    with pytest.raises(ValueError, match="max_soft_tokens"):
        tf.Gemma4ImageProcessorPil(max_soft_tokens=100)
