"""Llama 3.2 Vision (Mllama): the image never enters the text sequence.

Each `<|image|>` stays one token that sees no pixels. The page is resized, aspect kept, onto the best canvas of up
to `max_image_tiles` square tiles (padded right and below), cut into tiles row-major; each tile's tokens are a CLS
token, which sees no single cell, then its patches row-major. Those tokens are the keys of the cross-attention
layers: with P = side^2 + 1 tokens a tile, image i's tile t's patch (r, c) is key (i * max_image_tiles + t) * P +
1 + r * side + c (every image has max_image_tiles tile slots; the unused ones are masked).
"""

from __future__ import annotations

import transformers as tf
from transformers import BatchEncoding
from transformers.models.mllama.image_processing_pil_mllama import (
    get_all_supported_aspect_ratios,
    get_image_size_fit_to_canvas,
)
from transformers.models.mllama.processing_mllama import build_string_from_input

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile
from ocrheads.models.base import ModelAdapter


class MllamaAdapter(ModelAdapter):
    family = "mllama"
    model_types = ("mllama",)
    image_placeholder = "<|image|>"
    model_class = tf.MllamaForConditionalGeneration
    processor_class = tf.MllamaProcessor
    image_keys = "cross"

    @property
    def _tile(self) -> tuple[int, int, int]:
        """A tile's pixels, its patch grid's side, and the keys it holds (CLS first)."""
        tile = self.processor.image_processor.size.height
        side = tile // self.model.config.vision_config.patch_size
        return tile, side, side * side + 1

    def check_agreement(self) -> None:
        """Tiles must be the vision tower's size and as many as its tile embeddings, or keys would not be patches."""
        vision, image_processor = self.model.config.vision_config, self.processor.image_processor
        if (image_processor.size.height, image_processor.max_image_tiles) != (vision.image_size, vision.max_num_tiles):
            raise OcrHeadsError(
                f"mllama: the processor cuts {image_processor.max_image_tiles} tiles of {image_processor.size.height} "
                f"px, the vision tower takes {vision.max_num_tiles} of {vision.image_size} px; use the checkpoint's "
                "own processor"
            )

    def tokenized_text(self, prompt: str) -> str:
        """The processor puts its begin-of-text token in front of a prompt without one (after leading images)."""
        return build_string_from_input(prompt, self.processor.bos_token, self.image_placeholder)

    def image_key_length(self, batch: BatchEncoding) -> int:
        images, slots = batch["pixel_values"].shape[1:3]
        return images * slots * self._tile[2]

    def image_key_positions(self, batch: BatchEncoding, item: int) -> set[int]:
        """Every key of each real tile of the item's images, CLS tokens included."""
        slots, per_tile = self.processor.image_processor.max_image_tiles, self._tile[2]
        keys = set()
        for image, tiles in enumerate(self._tile_grids(batch, item)):
            first = image * slots * per_tile
            keys.update(range(first, first + tiles[0] * tiles[1] * per_tile))
        return keys

    def _tile_grids(self, batch: BatchEncoding, item: int) -> list[tuple[int, int]]:
        """(tile rows, tile columns) of each image of batch item `item`, from its aspect-ratio ids (0: no image)."""
        ratios = get_all_supported_aspect_ratios(self.processor.image_processor.max_image_tiles)
        return [ratios[int(ratio) - 1] for ratio in batch["aspect_ratio_ids"][item].tolist() if ratio > 0]

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        tile, side, per_tile = self._tile
        slots = self.processor.image_processor.max_image_tiles
        images = []
        grids = self._tile_grids(batch, item)  # fewer than `sizes`: image_tokens names the batch item
        for index, ((width, height), (rows, cols)) in enumerate(zip(sizes, grids, strict=False)):
            resized_h, resized_w = map(int, get_image_size_fit_to_canvas(height, width, rows * tile, cols * tile, tile))
            scale_x, scale_y = width / resized_w, height / resized_h  # a tile past the resized page sees padding
            tiles = []
            for number in range(rows * cols):
                row, col = divmod(number, cols)
                region = (col * tile * scale_x, row * tile * scale_y, (col + 1) * tile * scale_x,
                          (row + 1) * tile * scale_y)  # fmt: skip
                start = (index * slots + number) * per_tile + 1
                tiles.append(Tile(start, side, side, region, (tile, tile)))
            images.append(ImageTokens(index, (width, height), tuple(tiles)))
        return images
