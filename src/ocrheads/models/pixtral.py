"""Pixtral vision towers: a LLaVA checkpoint with a Pixtral tower (Pixtral-12B), and Mistral 3 (Mistral Small
3.x), which merges each 2 x 2 block of patches into one token.

The processor resizes the whole page, its aspect kept, to fit `longest_edge`, each side rounded up to whole
tokens (patch_size x spatial_merge_size pixels), and gives each image's resized (height, width) in
`image_sizes`. An image's tokens are its row-major grid with `[IMG_BREAK]` after each row but the last, which
ends in `[IMG_END]`; neither sees pixels, so the grid's rows are cols + 1 tokens apart.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import transformers as tf
from transformers import BatchEncoding, PretrainedConfig
from transformers.models.pixtral import image_processing_pil_pixtral
from transformers.utils import is_torchvision_available

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile, whole_image
from ocrheads.models.base import ModelAdapter, runs_of


def transformers_processor() -> type:
    """transformers' PixtralProcessor. Its module imports one helper from the torchvision image processor's module,
    which cannot load without torchvision (the helper counts tokens for serving engines; the PIL image processor's
    module defines the same one), so the class is a stand-in that raises there. Without torchvision, the module is
    loaded once with that helper taken from the PIL module: the class and what it does are transformers' own, on
    every machine, and pages are prepared by PIL as everywhere."""
    if is_torchvision_available():
        return tf.PixtralProcessor
    name = "transformers.models.pixtral.processing_pixtral"
    if name not in sys.modules:
        helper = types.ModuleType("transformers.models.pixtral.image_processing_pixtral")
        helper.get_resize_output_image_size = image_processing_pil_pixtral.get_resize_output_image_size
        sys.modules.setdefault(helper.__name__, helper)
        spec = importlib.util.spec_from_file_location(name, importlib.util.find_spec(name).origin)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].PixtralProcessor


def has_pixtral_tower(config: PretrainedConfig) -> bool:
    return getattr(getattr(config, "vision_config", None), "model_type", None) == "pixtral"


class PixtralAdapter(ModelAdapter):
    family = "pixtral"
    model_types = ("llava",)
    image_placeholder = "[IMG]"
    model_class = tf.LlavaForConditionalGeneration
    processor_class = transformers_processor()
    pixel_options = ("longest_edge",)

    @classmethod
    def claims(cls, config: PretrainedConfig) -> bool:
        return super().claims(config) and has_pixtral_tower(config)

    @classmethod
    def set_pixel_options(cls, model, processor, longest_edge=None):
        """longest_edge: the longest side a page is resized to fit (more tokens when larger)."""
        if longest_edge is not None:
            processor.image_processor.size = {"longest_edge": longest_edge}

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        token_pixels = self.processor.patch_size * self.processor.spatial_merge_size
        runs = runs_of(batch["input_ids"][item], self.model.config.image_token_id)
        first = sum(len(runs_of(batch["input_ids"][i], self.processor.image_end_token_id)) for i in range(item))
        images, used = [], 0
        for index, size in enumerate(sizes):
            height, width = (int(side) for side in batch["image_sizes"][first + index])
            rows, cols = height // token_pixels, width // token_pixels
            mine = runs[used : used + rows]
            used += rows
            start = mine[0][0] if mine else -1
            if mine != [(start + row * (cols + 1), cols) for row in range(rows)]:
                raise OcrHeadsError(
                    f"batch item {item}, image {index}: its tokens are not {rows} rows of {cols} between breaks, as "
                    f"the processor's {width}x{height} px resize makes them; was the prompt built with this processor?"
                )
            tile = Tile(start, rows, cols, whole_image(size), (width, height), row_stride=cols + 1)
            images.append(ImageTokens(index, size, (tile,)))
        return images


class Mistral3Adapter(PixtralAdapter):
    family = "mistral3"
    model_types = ("mistral3",)
    model_class = tf.Mistral3ForConditionalGeneration

    @classmethod
    def claims(cls, config: PretrainedConfig) -> bool:
        return config.model_type in cls.model_types
