"""PaliGemma 1 and 2: every image squashed to one square (224, 448 or 896 px), a row-major patch grid.

The processor puts every image's `<image>` tokens first, then BOS, the prompt and a newline; that prefix is
attended both ways (token type 0), what the model writes only causally (type 1). Images' tokens touch: each holds
image_seq_length of them, in prompt order. The processor refuses prompts without images, so text prompts are
written as it would write them: BOS, the prompt, a newline, all prefix.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import transformers as tf
from PIL import Image
from transformers import BatchEncoding

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile, square_side, whole_image
from ocrheads.models.base import ModelAdapter


class PaliGemmaAdapter(ModelAdapter):
    family = "paligemma"
    model_types = ("paligemma",)
    image_placeholder = "<image>"
    model_class = tf.PaliGemmaForConditionalGeneration
    processor_class = tf.PaliGemmaProcessor
    written_token_types: ClassVar[dict[str, int]] = {"token_type_ids": 1}  # generate appends the suffix type

    def _tokenized(self, prompts: list[str], pages: list[list[Image.Image]] | None) -> BatchEncoding:
        """The processor's ids, token types and pixels, without the training labels it adds; text prompts as it
        would write them."""
        if pages is not None:
            batch = super()._tokenized(prompts, pages)
            batch.pop("labels", None)
            return batch
        texts = [self.tokenized_text(prompt) for prompt in prompts]
        return self.processor.tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=True)

    def tokenized_text(self, prompt: str) -> str:
        return f"{self.processor.tokenizer.bos_token}{prompt}\n"

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        per_image = self.processor.image_seq_length
        positions = torch.nonzero(batch["input_ids"][item] == self.model.config.image_token_id).flatten().tolist()
        one_run = not positions or positions[-1] - positions[0] + 1 == len(positions)
        if len(positions) != per_image * len(sizes) or not one_run:
            raise OcrHeadsError(
                f"batch item {item}: {len(positions)} image tokens, but {len(sizes)} image(s) of {per_image} in one "
                "run before the prompt; was the prompt built by this adapter?"
            )
        side = square_side(per_image, f"{self.family} image_seq_length")
        target = self.processor.image_processor.size
        images = []
        for index, size in enumerate(sizes):
            tile = Tile(positions[index * per_image], side, side, whole_image(size), (target.width, target.height))
            images.append(ImageTokens(index, size, (tile,)))
        return images
