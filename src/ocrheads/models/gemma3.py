"""Gemma 3: each view squashed to a square, its patch grid average-pooled to mm_tokens_per_image tokens.

Each `<start_of_image>` becomes `<start_of_image> <image_soft_token> x N <end_of_image>`, the soft tokens a
row-major square grid over the whole image. With pan-and-scan (a pixel option: the processor's call defaults turn
it off whatever the image processor config says), a page much wider or taller than square is also cut into 2 to
`pan_and_scan_max_num_crops` equal crops along its long side, each a view of its own after the whole page: the
processor writes the whole page's span first, then one span per crop.
"""

from __future__ import annotations

import math

import transformers as tf
from transformers import BatchEncoding

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Region, Tile, square_side, whole_image
from ocrheads.models.base import ModelAdapter, runs_of

PAN_AND_SCAN = ("do_pan_and_scan", "pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops",
                "pan_and_scan_min_ratio_to_activate")  # fmt: skip


def pan_and_scan_crops(size: tuple[int, int], settings: dict) -> list[Region]:
    """The crops Gemma 3's pan-and-scan cuts from a page of `size` (width, height), row-major; none where the page
    is not elongated enough or a crop would be under the minimum size. The last crop ends at the page's edge."""
    width, height = size
    long, short = max(width, height), min(width, height)
    if not settings["do_pan_and_scan"] or long / short < settings["pan_and_scan_min_ratio_to_activate"]:
        return []
    count = min(math.floor(long / short + 0.5), math.floor(long / settings["pan_and_scan_min_crop_size"]))
    count = min(settings["pan_and_scan_max_num_crops"], max(2, count))
    across, down = (count, 1) if width >= height else (1, count)
    crop_width, crop_height = math.ceil(width / across), math.ceil(height / down)
    if min(crop_width, crop_height) < settings["pan_and_scan_min_crop_size"]:
        return []
    return [
        (float(x), float(y), float(min(x + crop_width, width)), float(min(y + crop_height, height)))
        for y in range(0, crop_height * down, crop_height)
        for x in range(0, crop_width * across, crop_width)
    ]


class Gemma3Adapter(ModelAdapter):
    family = "gemma3"
    model_types = ("gemma3",)
    image_placeholder = "<start_of_image>"
    model_class = tf.Gemma3ForConditionalGeneration
    processor_class = tf.Gemma3Processor
    pixel_options = PAN_AND_SCAN

    def image_options(self) -> dict:
        return {name: self.pixels[name] for name in PAN_AND_SCAN if name in self.pixels}

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        runs = runs_of(batch["input_ids"][item], self.model.config.image_token_id)
        target = self.processor.image_processor.size
        settings = self.image_settings(*PAN_AND_SCAN)
        images, used = [], 0
        for index, size in enumerate(sizes):
            regions = [whole_image(size), *pan_and_scan_crops(size, settings)]
            mine = runs[used : used + len(regions)]
            used += len(regions)
            if len(mine) != len(regions):
                raise OcrHeadsError(
                    f"batch item {item}, image {index}: a {size[0]}x{size[1]} image makes {len(regions)} view(s), "
                    f"but input_ids hold {len(mine)} more; were `sizes` the original image sizes?"
                )
            tiles = []
            for (start, length), region in zip(mine, regions, strict=True):
                side = square_side(length, f"batch item {item}, image {index}")
                tiles.append(Tile(start, side, side, region, (target.width, target.height)))
            images.append(ImageTokens(index, size, tuple(tiles)))
        if used != len(runs):
            raise OcrHeadsError(f"batch item {item}: {len(runs)} image views in input_ids, but the images make {used}")
        return images
