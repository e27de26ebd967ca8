"""LLaVA (1.5-style): one square view of the image, optionally padded to a square, resized, centre-cropped.

Each `<image>` becomes a square grid of patch tokens (plus a leading CLS token under the "full" feature
strategy, which sees no single cell and is left out of the grid). Text outside the centre crop is
invisible to the model: its boxes map to no token.
"""

from __future__ import annotations

import torch
import transformers as tf
from transformers import BatchEncoding

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Region, Tile, square_side
from ocrheads.models.base import ModelAdapter
from ocrheads.models.pixtral import has_pixtral_tower


def view_region(image_processor, size: tuple[int, int]) -> tuple[Region, tuple[int, int]]:
    """The rectangle of the original image that reaches the vision tower (pad to square, resize, centre-crop),
    and the pixel size it is resized to."""
    width, height = size
    left, top, canvas_w, canvas_h = 0.0, 0.0, width, height
    if getattr(image_processor, "do_pad", False):  # pad_to_square centres the image on a max-side canvas
        side = max(width, height)
        left, top, canvas_w, canvas_h = -((side - width) // 2), -((side - height) // 2), side, side
    resized_w, resized_h = canvas_w, canvas_h
    if image_processor.do_resize:
        target = image_processor.size
        if target.shortest_edge:  # shortest edge to the target, the other edge truncated to keep the ratio
            short, long = min(canvas_w, canvas_h), max(canvas_w, canvas_h)
            new_short, new_long = target.shortest_edge, int(target.shortest_edge * long / short)
            resized_w, resized_h = (new_short, new_long) if canvas_w <= canvas_h else (new_long, new_short)
        else:
            resized_w, resized_h = target.width, target.height
    if not image_processor.do_center_crop:
        return (left, top, left + canvas_w, top + canvas_h), (resized_w, resized_h)
    crop = image_processor.crop_size
    crop_left, crop_top = (resized_w - crop.width) // 2, (resized_h - crop.height) // 2
    scale_x, scale_y = canvas_w / resized_w, canvas_h / resized_h
    region = (
        left + crop_left * scale_x,
        top + crop_top * scale_y,
        left + (crop_left + crop.width) * scale_x,
        top + (crop_top + crop.height) * scale_y,
    )
    return region, (crop.width, crop.height)


class LlavaAdapter(ModelAdapter):
    family = "llava"
    model_types = ("llava",)
    image_placeholder = "<image>"
    model_class = tf.LlavaForConditionalGeneration
    processor_class = tf.LlavaProcessor

    @classmethod
    def claims(cls, config) -> bool:
        """A LLaVA checkpoint with a Pixtral tower is Pixtral's (rows of variable length between break tokens)."""
        return super().claims(config) and not has_pixtral_tower(config)

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        """Consecutive images' tokens touch, so the image tokens are split evenly, in order, between the images."""
        cls_tokens = 1 if self.model.config.vision_feature_select_strategy == "full" else 0
        positions = torch.nonzero(batch["input_ids"][item] == self.model.config.image_token_id).flatten().tolist()
        per_image = len(positions) // max(len(sizes), 1)
        if per_image * len(sizes) != len(positions):
            raise OcrHeadsError(f"batch item {item}: {len(positions)} image tokens cannot be {len(sizes)} equal images")
        images = []
        for index, size in enumerate(sizes):
            start = positions[index * per_image]
            side = square_side(per_image - cls_tokens, f"batch item {item}, image {index}")
            region, resized = view_region(self.processor.image_processor, size)
            images.append(ImageTokens(index, size, (Tile(start + cls_tokens, side, side, region, resized),)))
        return images
