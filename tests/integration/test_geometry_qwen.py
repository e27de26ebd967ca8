"""Box -> token geometry against the truth read from the processor's own pixel patches (Qwen-VL families)."""

import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import box_tokens
from ocrheads.models import adapter_class, load_adapter

from .tiny_inputs import LOAD_DEVICE, render_block, tiny_adapter, tiny_model

QWEN = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe", "glm4v", "glm4v_moe", "glm46v")


def _darkness_per_token(adapter, batch):
    """For every merged token: the darkest pixel's darkness in [0 white, 1 black], from pixel_values (a host copy:
    the batch is on the model's device)."""
    processor = adapter.processor.image_processor
    mean, std = torch.tensor(processor.image_mean), torch.tensor(processor.image_std)
    shape = (3, processor.temporal_patch_size, processor.patch_size, processor.patch_size)
    patches = batch["pixel_values"].cpu().view(-1, *shape)
    white, black = ((1 - mean) / std).view(1, 3, 1, 1, 1), ((0 - mean) / std).view(1, 3, 1, 1, 1)
    darkness = ((patches - white) / (black - white)).mean(1).flatten(1).amax(-1)
    return darkness.view(-1, processor.merge_size**2).amax(-1)


@pytest.mark.parametrize("family", QWEN)
def test_box_tokens_equal_the_tokens_whose_patches_hold_ink(family):
    adapter = tiny_adapter(family)
    cell = adapter.processor.image_processor.patch_size * adapter.processor.image_processor.merge_size
    exact = resampled = 0
    for width, height in [
        (16 * cell, 8 * cell),
        (20 * cell, 10 * cell),
        (500, 210),
        (300, 500),
        (333, 777),
        (1000, 90),
    ]:
        for trial in range(8):
            image, box = render_block(width, height, 5 + trial * 53 % (width - 30), 5 + trial * 37 % (height - 30))
            batch = adapter.encode([adapter.prompt("Read it.", 1)], [[image]])
            [[tokens]] = adapter.image_tokens(batch, [[image.size]])
            darkness = _darkness_per_token(adapter, batch)
            start = tokens.tiles[0].token_start
            any_ink = {start + int(k) for k in torch.nonzero(darkness > 1e-3).flatten()}
            mostly_ink = {start + int(k) for k in torch.nonzero(darkness >= 0.5).flatten()}
            found = set(box_tokens(box, tokens))
            grid = (tokens.tiles[0].cols * cell, tokens.tiles[0].rows * cell)
            assert tokens.tiles[0].pixels == grid  # what truncated boxes are scaled to
            if not family.startswith("glm"):  # GLM's processor resizes by its own rule
                bounds = adapter.processor.image_processor.size
                resized = smart_resize(height, width, cell, bounds["shortest_edge"], bounds["longest_edge"])
                assert grid == resized[::-1]
            if grid == (width, height):  # no resampling: pixel-exact
                assert found == any_ink, (width, height, trial)
                exact += 1
            else:  # resampling blurs edges: every mostly-inked token is found, nothing without ink is
                assert mostly_ink <= found <= any_ink, (width, height, trial)
                resampled += 1
    assert exact >= 8 and resampled >= 24 and exact + resampled == 48


def test_tokens_of_two_images_and_a_padded_batch():
    adapter = tiny_adapter("qwen2_vl")
    pages = [Image.new("RGB", (448, 224), "white"), Image.new("RGB", (224, 448), "white")]
    prompts = [adapter.prompt("Which page?", 2), adapter.prompt("One?", 1)]
    batch = adapter.encode(prompts, [pages, pages[:1]])
    [first, second] = adapter.image_tokens(batch, [[p.size for p in pages], [pages[0].size]])
    image_token = adapter.model.config.image_token_id
    for item, images in enumerate((first, second)):
        expected = torch.nonzero(batch["input_ids"][item] == image_token).flatten().tolist()
        assert [p for image in images for p in image.positions()] == expected
    assert [(t.rows, t.cols) for image in first for t in image.tiles] == [(8, 16), (16, 8)]
    # The last token of the second page sees its bottom-right pixel.
    assert box_tokens((223, 447, 224, 448), first[1]) == [first[1].positions()[-1]]


def test_image_count_must_match_the_prompt():
    adapter = tiny_adapter("qwen2_vl")
    page = Image.new("RGB", (56, 56), "white")
    with pytest.raises(OcrHeadsError, match=r"prompt 0 has 1 image placeholder\(s\) but 2 image\(s\)"):
        adapter.encode([adapter.prompt("q", 1)], [[page, page]])


def test_checkpoints_load_offline_from_a_folder_and_unknown_families_are_named(tmp_path):
    tiny = tiny_model("qwen2_vl")
    tiny.model.save_pretrained(tmp_path / "ckpt")
    tiny.processor.tokenizer.save_pretrained(tmp_path / "ckpt")
    tiny.processor.image_processor.save_pretrained(tmp_path / "ckpt")
    pixels = dict(min_pixels=56 * 56, max_pixels=56 * 56 * 4)
    adapter = load_adapter(tmp_path / "ckpt", **pixels, dtype=torch.float32, device=LOAD_DEVICE)
    assert adapter.processor.image_processor.size["longest_edge"] == 56 * 56 * 4
    page = Image.new("RGB", (400, 400), "white")
    batch = adapter.encode([adapter.prompt("q", 1)], [[page]])
    with torch.no_grad():
        assert torch.equal(adapter.model(**batch).logits, tiny.model(**batch).logits)
    tiny.model.config.model_type = "mystery_vl"
    with pytest.raises(OcrHeadsError, match="model type 'mystery_vl' is not supported; supported: qwen2_vl"):
        adapter_class(tiny.model.config)


PAPER_PIXELS = 256 * 28 * 28
# qwen-vl-utils' first resize, worked by hand: each side rounded to a multiple of 28 (the area is far inside its
# bounds of 4 to 16384 tokens)
FETCH_IMAGE_SIZES = {(270, 180): (280, 168), (464, 315): (476, 308), (1000, 90): (1008, 84)}


def _paper_pipeline(adapter):
    adapter.set_pixel_options(adapter.model, adapter.processor, min_pixels=PAPER_PIXELS, max_pixels=PAPER_PIXELS)
    adapter.pixels = {"min_pixels": PAPER_PIXELS, "max_pixels": PAPER_PIXELS, "pre_resize": True}
    return adapter


def test_pre_resize_gives_the_grid_and_pixels_of_the_paper_s_pipeline():
    """METHOD.md's worked example: fetch_image then the processor turn a 270 x 180 page into 588 x 364 pixels, 21 x 13
    tokens, where the processor alone gives 20 x 14; the pixels are the processor's of the page resized first."""
    adapter = _paper_pipeline(tiny_adapter("qwen2_vl"))
    for size, first in FETCH_IMAGE_SIZES.items():
        page = render_block(*size, 7, 5)[0]
        prompt = adapter.prompt("Read it.", 1)
        batch = adapter.encode([prompt], [[page]])
        resized = page.resize(first, Image.Resampling.BICUBIC)
        expected = adapter.processor(text=[prompt], images=[[resized]], return_tensors="pt")
        assert torch.equal(batch["pixel_values"].cpu(), expected["pixel_values"]), size
        [[tokens]] = adapter.image_tokens(batch, [[size]])
        if size == (270, 180):
            assert (tokens.tiles[0].rows, tokens.tiles[0].cols) == (13, 21) and tokens.tiles[0].pixels == (588, 364)
    adapter.pixels["pre_resize"] = False
    batch = adapter.encode([adapter.prompt("Read it.", 1)], [[Image.new("RGB", (270, 180), "white")]])
    [[tokens]] = adapter.image_tokens(batch, [[(270, 180)]])
    assert (tokens.tiles[0].rows, tokens.tiles[0].cols) == (14, 20)


def test_box_tokens_follow_the_page_through_both_resizes():
    """Both resizes scale the whole page, so a box scales from the original page to the final grid: every mostly-inked
    token is found, and nothing without ink."""
    adapter = _paper_pipeline(tiny_adapter("qwen2_vl"))
    for size in FETCH_IMAGE_SIZES:
        for trial in range(4):
            image, box = render_block(*size, 5 + trial * 53 % (size[0] - 30), 5 + trial * 37 % (size[1] - 30))
            batch = adapter.encode([adapter.prompt("Read it.", 1)], [[image]])
            [[tokens]] = adapter.image_tokens(batch, [[image.size]])
            darkness, start = _darkness_per_token(adapter, batch), tokens.tiles[0].token_start
            any_ink = {start + int(k) for k in torch.nonzero(darkness > 1e-3).flatten()}
            mostly_ink = {start + int(k) for k in torch.nonzero(darkness >= 0.5).flatten()}
            assert mostly_ink <= set(box_tokens(box, tokens)) <= any_ink, (size, trial)
            assert mostly_ink, (size, trial)


def test_pre_resize_is_a_yes_or_no_load_option_of_the_qwen_families_only(checkpoint):
    adapter = load_adapter(checkpoint, min_pixels=PAPER_PIXELS, max_pixels=PAPER_PIXELS, pre_resize=True)
    batch = adapter.encode([adapter.prompt("q", 1)], [[Image.new("RGB", (270, 180), "white")]])
    [[tokens]] = adapter.image_tokens(batch, [[(270, 180)]])
    assert (tokens.tiles[0].rows, tokens.tiles[0].cols) == (13, 21) and adapter.settings()["pixels"]["pre_resize"]
    with pytest.raises(OcrHeadsError, match="pre_resize takes true or false, got 'yes'"):
        load_adapter(checkpoint, pre_resize="yes")
    with pytest.raises(OcrHeadsError, match=r"llava has no pixel option\(s\) pre_resize"):
        adapter_class(tiny_adapter("llava").model.config).check_pixel_options({"pre_resize": True})
