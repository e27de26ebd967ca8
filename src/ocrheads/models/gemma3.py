"""Gemma 3: the whole image squashed to a square, its patch grid average-pooled to mm_tokens_per_image tokens.

Each `<start_of_image>` becomes `<start_of_image> <image_soft_token> x N <end_of_image>`; the soft tokens
are a row-major square grid over the whole image. Pan-and-scan crops are not mapped.
"""

from __future__ import annotations

import transformers as tf
from transformers import BatchEncoding

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile, square_side, whole_image
from ocrheads.models.base import ModelAdapter, runs_of


class Gemma3Adapter(ModelAdapter):
    family = "gemma3"
    model_types = ("gemma3",)
    image_placeholder = "<start_of_image>"
    model_class = tf.Gemma3ForConditionalGeneration
    processor_class = tf.Gemma3Processor

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        if self.processor.image_processor.do_pan_and_scan:
            raise OcrHeadsError("Gemma 3 pan-and-scan crops are not mapped; set do_pan_and_scan=False on the processor")
        runs = runs_of(batch["input_ids"][item], self.model.config.image_token_id)
        target = self.processor.image_processor.size
        images = []
        for index, ((start, length), size) in enumerate(zip(runs, sizes, strict=False)):
            side = square_side(length, f"batch item {item}, image {index}")
            tile = Tile(start, side, side, whole_image(size), (target.width, target.height))
            images.append(ImageTokens(index, size, (tile,)))
        return images
