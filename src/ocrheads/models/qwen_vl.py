"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: one token per (merge x patch)^2 pixels of a resized whole image.

`image_grid_thw` gives each image's patch grid; after the 2x2 merge the tokens form a row-major
(h/2) x (w/2) grid over the whole (uniformly resized) image. Each image is
`<|vision_start|> <|image_pad|> x N <|vision_end|>` in input_ids.
"""

from __future__ import annotations

import transformers as tf
from transformers import BatchEncoding

from ocrheads.errors import OcrHeadsError
from ocrheads.models.base import ModelAdapter, image_only, runs_of
from ocrheads.models.geometry import ImageTokens, Tile


class QwenVLAdapter(ModelAdapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl",)
    image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    _model_class: type = tf.Qwen2VLForConditionalGeneration
    _processor_class: type = tf.Qwen2VLProcessor

    @classmethod
    def model_class(cls):
        return cls._model_class

    @classmethod
    def build_processor(cls, name_or_path, tokenizer, chat_template, min_pixels=None, max_pixels=None):
        """min_pixels/max_pixels bound the resized image area (the paper fixed both at 256 * 28 * 28)."""
        image_processor = tf.Qwen2VLImageProcessorPil.from_pretrained(name_or_path)
        size = dict(image_processor.size)
        if min_pixels is not None:
            size["shortest_edge"] = min_pixels
        if max_pixels is not None:
            size["longest_edge"] = max_pixels
        image_processor.size = size
        return image_only(cls._processor_class)(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template
        )

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        ids = batch["input_ids"][item]
        merge = self.processor.image_processor.merge_size
        grids = batch["image_grid_thw"]
        first_grid = sum(len(self._runs(batch["input_ids"][i])) for i in range(item))
        images = []
        for index, ((start, length), size) in enumerate(zip(self._runs(ids), sizes, strict=False)):
            _, height, width = (int(v) for v in grids[first_grid + index])
            rows, cols = height // merge, width // merge
            if rows * cols != length:
                raise OcrHeadsError(
                    f"batch item {item}, image {index}: {length} image tokens but a {rows}x{cols} grid; "
                    "was the prompt built with a different processor?"
                )
            tile = Tile(start, rows, cols, (0.0, 0.0, float(size[0]), float(size[1])))
            images.append(ImageTokens(index, size, (tile,)))
        return images

    def _runs(self, ids) -> list[tuple[int, int]]:
        return runs_of(ids, self.model.config.image_token_id)


class Qwen2_5_VLAdapter(QwenVLAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    _model_class = tf.Qwen2_5_VLForConditionalGeneration
    _processor_class = tf.Qwen2_5_VLProcessor


class Qwen3VLAdapter(QwenVLAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl",)
    _model_class = tf.Qwen3VLForConditionalGeneration
    _processor_class = tf.Qwen3VLProcessor
