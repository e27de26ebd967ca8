"""Gemma 4: the whole page, aspect kept, resized to fill a soft-token budget; 3 x 3 patches pooled into a token.

The processor resizes each page to the largest size whose sides are multiples of pooling_kernel_size x patch_size
pixels (48 in the published checkpoints) with at most max_soft_tokens (70, 140, 280, 560 or 1120) tokens, small
pages scaled up; the vision tower pools each 3 x 3 block of patches into one soft token, row-major. Each image is
`<boi> <image> x N <eoi>` in the text. Its text model shares keys and values between layers (the last layers reuse
an earlier layer's), alternates sliding-window and global layers, and may route its MLPs to experts; none of that
changes where the image's tokens are.
"""

from __future__ import annotations

import transformers as tf
from transformers import BatchEncoding
from transformers.models.gemma4.image_processing_pil_gemma4 import get_aspect_ratio_preserving_size

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile, whole_image
from ocrheads.models.base import ModelAdapter, image_only, runs_of

RESIZE = ("patch_size", "max_soft_tokens", "pooling_kernel_size")


class Gemma4Adapter(ModelAdapter):
    family = "gemma4"
    model_types = ("gemma4",)
    model_class = tf.Gemma4ForConditionalGeneration
    processor_class = image_only(tf.Gemma4Processor)
    pixel_options = ("max_soft_tokens",)

    @property
    def image_placeholder(self) -> str:
        """What the processor expands into an image's tokens: its tokenizer's image token."""
        return self.processor.image_token

    def image_options(self) -> dict:
        return {"max_soft_tokens": self.pixels["max_soft_tokens"]} if "max_soft_tokens" in self.pixels else {}

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        runs = runs_of(batch["input_ids"][item], self.model.config.image_token_id)
        if len(runs) != len(sizes):
            raise OcrHeadsError(f"batch item {item}: {len(runs)} images in input_ids, but {len(sizes)} image sizes")
        settings = self.image_settings(*RESIZE)
        patch, kernel = settings["patch_size"], settings["pooling_kernel_size"]
        images = []
        for index, ((start, length), (width, height)) in enumerate(zip(runs, sizes, strict=True)):
            resized_h, resized_w = get_aspect_ratio_preserving_size(
                height, width, patch, settings["max_soft_tokens"] * kernel**2, kernel
            )
            rows, cols = resized_h // (patch * kernel), resized_w // (patch * kernel)
            if rows * cols != length:
                raise OcrHeadsError(
                    f"batch item {item}, image {index}: a {width}x{height} page makes {rows} x {cols} tokens at "
                    f"{settings['max_soft_tokens']} soft tokens, but input_ids hold {length}"
                )
            tile = Tile(start, rows, cols, whole_image((width, height)), (resized_w, resized_h))
            images.append(ImageTokens(index, (width, height), (tile,)))
        return images
