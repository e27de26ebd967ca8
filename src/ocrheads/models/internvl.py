"""InternVL (transformers-native checkpoints): row-major crops of a resized image, then a thumbnail.

The processor picks a cols x rows tile canvas closest to the image's aspect ratio, resizes the whole image
onto it and cuts equal crops; when there is more than one crop, a thumbnail of the whole image follows.
Each image is `<img> <IMG_CONTEXT> x (image_seq_length * tiles) </img>`; every tile is a square token grid
(pixel shuffle keeps row-major order).
"""

from __future__ import annotations

import transformers as tf
from transformers import BatchEncoding
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile, crop_regions, square_side, whole_image
from ocrheads.models.base import ModelAdapter, image_only, runs_of


class InternVLAdapter(ModelAdapter):
    family = "internvl"
    model_types = ("internvl",)
    image_placeholder = "<IMG_CONTEXT>"
    model_class = tf.InternVLForConditionalGeneration
    processor_class = image_only(tf.InternVLProcessor)
    pixel_options = ("min_patches", "max_patches")  # bounds on the number of crops per image

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        per_tile = self.processor.image_seq_length
        side = square_side(per_tile, f"{self.family} image_seq_length")
        runs = runs_of(batch["input_ids"][item], self.model.config.image_token_id)
        target = self.processor.image_processor.size  # every crop and the thumbnail are resized to it
        resized = (target.width, target.height)
        images = []
        for index, ((start, length), size) in enumerate(zip(runs, sizes, strict=False)):
            regions = self._regions(size)
            if length != per_tile * len(regions):
                raise OcrHeadsError(
                    f"batch item {item}, image {index}: {length} image tokens, but a {size[0]}x{size[1]} image "
                    f"gives {len(regions)} tile(s) of {per_tile}; were `sizes` the original image sizes?"
                )
            tiles = tuple(Tile(start + k * per_tile, side, side, region, resized) for k, region in enumerate(regions))
            images.append(ImageTokens(index, size, tiles))
        return images

    def _regions(self, size: tuple[int, int]) -> list:
        processor = self.processor.image_processor
        if not (processor.crop_to_patches and processor.max_patches > 1):
            return [whole_image(size)]
        tile = (processor.size.height, processor.size.width)
        cols, rows = get_optimal_tiled_canvas((size[1], size[0]), tile, processor.min_patches, processor.max_patches)
        crops = crop_regions(size, rows, cols)
        return crops if len(crops) == 1 else [*crops, whole_image(size)]
