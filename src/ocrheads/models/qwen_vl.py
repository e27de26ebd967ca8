"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL (and its mixture-of-experts text model), and GLM-4.1V / 4.5V / 4.6V: one token
per (merge x patch)^2 pixels of a resized whole image.

`image_grid_thw` gives each image's patch grid; after the 2x2 merge the tokens form a row-major
(h/2) x (w/2) grid over the whole (uniformly resized) image. Each image is
`<|vision_start|> <|image_pad|> x N <|vision_end|>` in input_ids (GLM: `<|begin_of_image|> <|image|> x N
<|end_of_image|>`); the GLM vision towers merge each 2 x 2 group of the processor's patches as Qwen's do.
"""

from __future__ import annotations

from collections.abc import Sequence

import transformers as tf
from PIL import Image
from transformers import BatchEncoding
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile, whole_image
from ocrheads.models.base import ModelAdapter, image_only, runs_of
from ocrheads.models.paper_code import PaperCode

# qwen-vl-utils 0.0.8's fetch_image (the model card's pipeline, which the paper's code used): every page is first
# resized to multiples of a token's pixel size with an area of 4 to 16384 tokens, by PIL's bicubic filter.
FETCH_IMAGE_TOKENS = (4, 16384)
PAPER_PIXELS = 256 * 28 * 28  # the paper's min_pixels = max_pixels (METHOD.md 2.1)


class QwenVLAdapter(ModelAdapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl",)
    image_placeholder = "<|vision_start|><|image_pad|><|vision_end|>"
    model_class = tf.Qwen2VLForConditionalGeneration
    processor_class = image_only(tf.Qwen2VLProcessor)
    pixel_options = ("min_pixels", "max_pixels", "pre_resize")
    # The chat template with its default system turn; qwen-vl-utils' resize, then 256 x 28 x 28 pixels a page;
    # generate(max_new_tokens=128) under the checkpoint's generation config, whose top_k 1 makes its sampling greedy
    # over logits under the checkpoint's repetition penalty: the "eos" stops and the checkpoint's own penalty
    # (METHOD.md 2.1, 2.2).
    paper_code = PaperCode(
        "chat", {"min_pixels": PAPER_PIXELS, "max_pixels": PAPER_PIXELS, "pre_resize": True}, max_new_tokens=128
    )

    @classmethod
    def check_pixel_options(cls, pixels: dict) -> None:
        super().check_pixel_options(pixels)
        if not isinstance(pixels.get("pre_resize", False), bool):
            raise OcrHeadsError(f"pre_resize takes true or false, got {pixels['pre_resize']!r}")

    @classmethod
    def set_pixel_options(cls, model, processor, min_pixels=None, max_pixels=None, pre_resize=None):
        """min_pixels/max_pixels bound the resized image area (the paper fixed both at 256 * 28 * 28); pre_resize
        is not the processor's: `prepared_pages` reads it."""
        image_processor = processor.image_processor
        size = dict(image_processor.size)
        if min_pixels is not None:
            size["shortest_edge"] = min_pixels
        if max_pixels is not None:
            size["longest_edge"] = max_pixels
        image_processor.size = size

    def prepared_pages(self, pages: Sequence[Image.Image]) -> list[Image.Image]:
        """With pre_resize, each page resized first as qwen-vl-utils' fetch_image does, then again by the processor
        to its own bounds, as the paper's code fed Qwen2-VL. The first resize rounds each side to a multiple of a
        token's pixels, which changes the aspect ratio the second one keeps, so the grid can differ from a single
        resize's: a 270 x 180 page at the paper's 256 x 28 x 28 pixels gets 21 x 13 tokens, not 20 x 14."""
        if not self.pixels.get("pre_resize"):
            return list(pages)
        factor = self.processor.image_processor.patch_size * self.processor.image_processor.merge_size
        fewest, most = (tokens * factor**2 for tokens in FETCH_IMAGE_TOKENS)
        resized = []
        for page in pages:
            height, width = smart_resize(page.height, page.width, factor, fewest, most)
            resized.append(page.convert("RGB").resize((width, height), Image.Resampling.BICUBIC))
        return resized

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        ids = batch["input_ids"][item]
        merge = self.processor.image_processor.merge_size
        token_pixels = merge * self.processor.image_processor.patch_size  # each token sees this square, resized
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
            tile = Tile(start, rows, cols, whole_image(size), (cols * token_pixels, rows * token_pixels))
            images.append(ImageTokens(index, size, (tile,)))
        return images

    def _runs(self, ids) -> list[tuple[int, int]]:
        return runs_of(ids, self.model.config.image_token_id)


class Qwen2_5_VLAdapter(QwenVLAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    model_class = tf.Qwen2_5_VLForConditionalGeneration
    processor_class = image_only(tf.Qwen2_5_VLProcessor)
    paper_code = None  # the paper ran Qwen2-VL only


class Qwen3VLAdapter(QwenVLAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl",)
    model_class = tf.Qwen3VLForConditionalGeneration
    processor_class = image_only(tf.Qwen3VLProcessor)
    paper_code = None


class Qwen3VLMoeAdapter(Qwen3VLAdapter):
    family = "qwen3_vl_moe"
    model_types = ("qwen3_vl_moe",)
    model_class = tf.Qwen3VLMoeForConditionalGeneration


class Qwen3_5Adapter(Qwen3VLAdapter):
    """Qwen3.5: Qwen3-VL's pages on a hybrid text model, three layers in four linear attention (no attention weights:
    its `layer_types` say which, and no score applies to them)."""

    family = "qwen3_5"
    model_types = ("qwen3_5",)
    model_class = tf.Qwen3_5ForConditionalGeneration


class Qwen3_5MoeAdapter(Qwen3_5Adapter):
    family = "qwen3_5_moe"
    model_types = ("qwen3_5_moe",)
    model_class = tf.Qwen3_5MoeForConditionalGeneration


class Glm4vAdapter(QwenVLAdapter):
    """GLM-4.1V: its own resize (pixel bounds as Qwen's), not qwen-vl-utils' pipeline."""

    family = "glm4v"
    model_types = ("glm4v",)
    image_placeholder = "<|begin_of_image|><|image|><|end_of_image|>"
    model_class = tf.Glm4vForConditionalGeneration
    processor_class = image_only(tf.Glm4vProcessor)
    pixel_options = ("min_pixels", "max_pixels")
    paper_code = None


class Glm4vMoeAdapter(Glm4vAdapter):
    family = "glm4v_moe"
    model_types = ("glm4v_moe",)
    model_class = tf.Glm4vMoeForConditionalGeneration


class Glm46vAdapter(Glm4vAdapter):
    family = "glm46v"
    model_types = ("glm46v",)
    model_class = tf.Glm46VForConditionalGeneration
    processor_class = image_only(tf.Glm46VProcessor)
