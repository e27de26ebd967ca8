"""Idefics3 and SmolVLM: equal crops of a resized image, row-major, then the whole image as a global view.

The processor resizes the image to multiples of its tile size and splits it; each crop is
`<fake_token_around_image> <row_r_col_c> <image> x image_seq_len`, the global view is introduced by
`<global-img>`. Small images are not split and get the global view only. Pixel shuffle keeps each tile's
tokens row-major.
"""

from __future__ import annotations

import transformers as tf
from transformers import BatchEncoding

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile, crop_regions, square_side, whole_image
from ocrheads.models.base import ModelAdapter, image_only, runs_of


class Idefics3Adapter(ModelAdapter):
    family = "idefics3"
    model_types = ("idefics3",)
    image_placeholder = "<image>"
    model_class = tf.Idefics3ForConditionalGeneration
    processor_class = tf.Idefics3Processor
    pixel_options = ("longest_edge", "do_image_splitting")

    @classmethod
    def set_pixel_options(cls, model, processor, longest_edge=None, do_image_splitting=None):
        """longest_edge: the image's longest side before splitting (more crops when larger)."""
        image_processor = processor.image_processor
        if longest_edge is not None:
            image_processor.size = {"longest_edge": longest_edge}
        if do_image_splitting is not None:
            image_processor.do_image_splitting = do_image_splitting

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        per_tile = self.processor.image_seq_len
        side = square_side(per_tile, f"{self.family} image_seq_len")
        runs = runs_of(batch["input_ids"][item], self.model.config.image_token_id)
        images, used = [], 0
        for index, size in enumerate(sizes):
            _, rows, cols = self.processor.image_processor.get_number_of_image_patches(size[1], size[0])
            regions = [*crop_regions(size, rows, cols), whole_image(size)] if rows else [whole_image(size)]
            mine = runs[used : used + len(regions)]
            used += len(regions)
            if len(mine) != len(regions) or any(length != per_tile for _, length in mine):
                raise OcrHeadsError(
                    f"batch item {item}, image {index}: its tokens do not match a {size[0]}x{size[1]} image "
                    f"({len(regions)} tile(s) of {per_tile}); were `sizes` the original image sizes?"
                )
            tiles = tuple(Tile(start, side, side, region) for (start, _), region in zip(mine, regions, strict=True))
            images.append(ImageTokens(index, size, tiles))
        if used != len(runs):
            raise OcrHeadsError(
                f"batch item {item}: {len(runs)} image tiles in input_ids, but {len(sizes)} images make {used}"
            )
        return images


class SmolVLMAdapter(Idefics3Adapter):
    family = "smolvlm"
    model_types = ("smolvlm",)
    model_class = tf.SmolVLMForConditionalGeneration
    processor_class = image_only(tf.SmolVLMProcessor)
