"""LLaVA-NeXT and LLaVA-OneVision geometry against the truth: the processor's own pixels, packed into tokens by the
model's own code. Each vision patch's ink (its darkest pixel on a page with a solid glyph, less the same page
blank: the canvas padding cancels) goes through the model's `pack_image_features` as a one-channel feature, with a
newline marked -1, so every token's ink is where the model puts it: unpadded, interpolated (OneVision), between
newlines. The tokens `box_tokens` finds must hold ink and never be a newline, and every mostly-inked token must
be found (exactly the inked ones where a view is not resampled)."""

import json

import pytest
import torch
from PIL import Image
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import box_tokens
from ocrheads.models import llava_next, load_adapter

from .tiny_inputs import render_block, tiny_adapter

SIZES = [(56, 56), (64, 64), (120, 80), (300, 60), (60, 300), (20, 20), (400, 400), (170, 113), (41, 635), (700, 30)]
NEWLINE = -1.0


def _patch_ink(adapter, page_pixels: torch.Tensor, blank_pixels: torch.Tensor) -> torch.Tensor:
    """(patches, cells, 1): each vision patch's darkest pixel on the glyph page, above the blank page's."""
    processor = adapter.processor.image_processor
    mean, std = (torch.tensor(values).view(3, 1, 1) for values in (processor.image_mean, processor.image_std))

    def darkness(pixels):
        return 1 - (pixels * std + mean).mean(-3)  # (patches, S, S), white 0, black 1

    ink = (darkness(page_pixels) - darkness(blank_pixels)).clamp(min=0)
    vision = adapter.model.config.vision_config
    side, patch = vision.image_size // vision.patch_size, vision.patch_size
    cells = ink.view(-1, side, patch, side, patch).amax((2, 4))
    return cells.reshape(len(ink), side * side, 1)


def _packed(adapter, features: list[torch.Tensor], image_sizes: torch.Tensor) -> list[torch.Tensor]:
    newline = torch.tensor([NEWLINE])
    with torch.no_grad():
        if adapter.family == "llava_next":
            packed, _ = adapter.model.model.pack_image_features(features, image_sizes, "default", newline)
        else:
            ratio = adapter.model.config.vision_aspect_ratio
            packed, _ = adapter.model.model.pack_image_features(features, image_sizes, newline, ratio)
    return [item.flatten() for item in packed]


def _encoded(adapter, pages):
    batch = adapter.encode([adapter.prompt("Read it.", len(pages))], [pages])
    return {name: value.cpu() for name, value in batch.items()}


def _check(adapter, pages, glyph_page, box) -> dict[str, int]:
    """Compare box_tokens with the packed ink for the glyph on page `glyph_page` of `pages`; returns how many
    views were compared exactly and within bounds."""
    blank = [page if index != glyph_page else Image.new("RGB", page.size, "white") for index, page in enumerate(pages)]
    batch, blank_batch = _encoded(adapter, pages), _encoded(adapter, blank)
    [images] = adapter.image_tokens(batch, [[page.size for page in pages]])
    config = adapter.model.config
    features = []
    for index, page in enumerate(pages):  # each image's patches, as the model counts them (the rest are padding)
        patches = image_size_to_num_patches(
            (page.height, page.width), config.image_grid_pinpoints, config.vision_config.image_size
        )
        if adapter.family == "llava_onevision" and len(pages) > 1:
            patches = 1  # several OneVision images: base views only
        page_pixels, blank_pixels = (b["pixel_values"][index][:patches] for b in (batch, blank_batch))
        features.append(_patch_ink(adapter, page_pixels, blank_pixels))
    ink = torch.cat(_packed(adapter, features, batch["image_sizes"]))
    positions = torch.nonzero(batch["input_ids"][0] == adapter.model.config.image_token_id).flatten().tolist()
    assert len(positions) == len(ink), "the model packs as many tokens as the prompt holds"
    token_ink = dict(zip(positions, ink.tolist(), strict=True))
    found = set(box_tokens(box, images[glyph_page]))
    assert all(token_ink[position] != NEWLINE for position in found), "a newline was found"
    compared = {"exact": 0, "resampled": 0}
    for tile in images[glyph_page].tiles:
        cells = tile.positions()
        any_ink = {p for p in cells if token_ink[p] > 1e-3}
        mostly = {p for p in cells if token_ink[p] >= 0.5}
        in_tile = found & set(cells)
        x0, y0, x1, y1 = tile.region
        if all(float(v).is_integer() for v in tile.region) and tile.pixels == (x1 - x0, y1 - y0):
            assert in_tile == any_ink, tile
            compared["exact"] += 1
        else:
            assert mostly <= in_tile <= any_ink, tile
            compared["resampled"] += 1
    on_grids = {position for image in images for position in image.positions()}
    assert set(positions) - on_grids == {p for p in positions if token_ink[p] == NEWLINE}, "newlines off the grids"
    return compared


@pytest.mark.parametrize("family", ["llava_next", "llava_onevision"])
def test_box_tokens_are_the_tokens_the_model_packs_the_ink_into(family):
    adapter = tiny_adapter(family)
    compared = {"exact": 0, "resampled": 0}
    for width, height in SIZES:
        for trial in range(4):
            page, box = render_block(width, height, trial * 53 % max(1, width - 13), trial * 37 % max(1, height - 23))
            for kind, count in _check(adapter, [page], 0, box).items():
                compared[kind] += count
    assert compared["exact"] >= 4 and compared["resampled"] >= 40, compared


def test_several_onevision_images_are_each_a_padded_base_view():
    adapter = tiny_adapter("llava_onevision")
    for sizes in (((120, 80), (60, 90)), ((64, 64), (300, 60), (40, 100))):
        for glyph in range(len(sizes)):
            width, height = sizes[glyph]
            page, box = render_block(width, height, 3, min(5, height - 23))
            pages = [page if index == glyph else Image.new("RGB", size, "white") for index, size in enumerate(sizes)]
            assert sum(_check(adapter, pages, glyph, box).values()) == 1  # the one base view


def test_pinpoints_and_the_feature_budget_are_load_options_the_processor_and_the_model_share(tmp_path, caplog):
    big = Image.new("RGB", (400, 400), "white")
    llava_next._warn_coarse_interpolation.cache_clear()  # once a process: other tests may have set it off
    counts = {}
    runs = [("llava_next", {}), ("llava_next", {"image_grid_pinpoints": [[56, 112]]}), ("llava_onevision", {}),
            ("llava_onevision", {"vision_aspect_ratio": "anyres_max_1"})]  # fmt: skip
    for family, options in runs:
        adapter = tiny_adapter(family)
        folder = tmp_path / family
        adapter.model.save_pretrained(folder)
        adapter.processor.save_pretrained(folder)
        loaded = load_adapter(folder, **options)
        batch = loaded.encode([loaded.prompt("q", 1)], [[big]])
        with torch.no_grad():
            loaded.model(**batch)  # the model makes as many features as the processor wrote tokens
        [[image]] = loaded.image_tokens(batch, [[big.size]])
        counts[family, str(options)] = [(tile.rows, tile.cols) for tile in image.tiles]
    assert counts["llava_next", "{}"] == [(4, 4), (8, 8)]  # the 112 x 112 canvas: 2 x 2 tiles
    assert counts["llava_next", "{'image_grid_pinpoints': [[56, 112]]}"] == [(4, 4), (4, 4)]
    assert counts["llava_onevision", "{}"] == [(4, 4), (8, 8)]  # 12 x 12 features over budget 4: interpolated
    assert counts["llava_onevision", "{'vision_aspect_ratio': 'anyres_max_1'}"] == [(4, 4), (4, 4)]
    coarse = [r.message for r in caplog.records if "interpolated down more than twice" in r.message]
    assert len(coarse) == 1  # 12 x 12 features to 4 x 4 (anyres_max_4: to 8 x 8, no warning)


def test_a_processor_and_a_model_that_tile_differently_are_refused_in_one_line(tmp_path):
    adapter = tiny_adapter("llava_onevision")
    adapter.model.save_pretrained(tmp_path)
    adapter.processor.save_pretrained(tmp_path)
    path = tmp_path / "processor_config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps(saved | {"vision_aspect_ratio": "anyres_max_2"}))
    with pytest.raises(OcrHeadsError, match=r"^llava_onevision: the processor's vision_aspect_ratio 'anyres_max_2' is"):
        load_adapter(tmp_path)
    assert load_adapter(tmp_path, vision_aspect_ratio="anyres_max_2").model.config.vision_aspect_ratio == "anyres_max_2"
    path.write_text(json.dumps(saved))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"image_grid_pinpoints": [[64, 64]]}))
    with pytest.raises(OcrHeadsError, match=r"image_grid_pinpoints .* are not the model's"):
        load_adapter(tmp_path)
