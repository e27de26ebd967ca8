"""InternVL (transformers-native checkpoints): row-major crops of a resized image, then a thumbnail.

The processor picks a cols x rows tile canvas closest to the image's aspect ratio, resizes the whole image
onto it and cuts equal crops; when there is more than one crop, a thumbnail of the whole image follows.
Every tile is a square token grid (pixel shuffle keeps row-major order).

Two prompt formats. `chat`: the chat template, each image its own `<img> <IMG_CONTEXT> x (image_seq_length *
tiles) </img>` span. `paper`: the raw prompt the paper's code sent InternVL2 (METHOD.md 2.1): no template, every
page in one `<img> ... </img>` block, then a newline and the question, so page e's tokens are the e-th run of its
tiles' tokens inside the one block.
"""

from __future__ import annotations

import re
from typing import ClassVar

import transformers as tf
from PIL import Image
from transformers import BatchEncoding
from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile, crop_regions, square_side, whole_image
from ocrheads.models.base import ModelAdapter, image_only, runs_of
from ocrheads.models.decoding import EOS
from ocrheads.models.paper_code import PaperCode


class InternVLAdapter(ModelAdapter):
    family = "internvl"
    model_types = ("internvl",)
    image_placeholder = "<IMG_CONTEXT>"
    model_class = tf.InternVLForConditionalGeneration
    processor_class = image_only(tf.InternVLProcessor)
    pixel_options = ("min_patches", "max_patches")  # bounds on the number of crops per image
    prompt_formats = ("chat", "paper")
    # The paper's code asked InternVL "What is the passkey?" (Qwen2-VL: "What is the pass key?", the samples' own
    # wording); NIAH questions are the samples' own (METHOD.md 2.3).
    paper_questions: ClassVar[dict[str, str]] = {"passkey": "What is the passkey?"}
    # One 448-px tile a page (load_image(max_num=1)), 32 new tokens, and a stop on the literal id 281 of InternLM2's
    # vocabulary (which piece it is was not verified; the code stops on it whatever the vocabulary) besides the
    # end-of-sequence id transformers 4.46 fell back to.
    paper_code = PaperCode("paper", {"max_patches": 1}, max_new_tokens=32, stop_tokens=(EOS, 281))

    def prompt(self, question: str, n_images: int) -> str:
        """The chat template's user turn, or in the paper format the raw `<img>` + one `<IMG_CONTEXT>` per page +
        `</img>\\n` + question, each placeholder standing for its page's tokens."""
        if self.prompt_format == "chat":
            return super().prompt(question, n_images)
        block = self.processor.start_image_token + self.image_placeholder * n_images + self.processor.end_image_token
        return f"{block}\n{question}"

    def _tokenized(self, prompts: list[str], pages: list[list[Image.Image]] | None) -> BatchEncoding:
        """In the paper format, each placeholder becomes its page's tokens with no `<img>` span of its own, and the
        text is tokenised as the paper's code did (the tokenizer adds BOS); pixels are the processor's own."""
        if self.prompt_format == "chat":
            return super()._tokenized(prompts, pages)
        flat = [page for item in pages or [] for page in item]
        tiles = [len(self._regions(page.size)) for page in flat]
        per_tile, placeholder, counts = self.processor.image_seq_length, self.image_placeholder, iter(tiles)
        texts = [re.sub(re.escape(placeholder), lambda _: placeholder * per_tile * next(counts), p) for p in prompts]
        batch = BatchEncoding(dict(self.processor.tokenizer(texts, padding=True, return_tensors="pt")))
        if flat:
            pixels = self.processor(text=[placeholder * len(flat)], images=[flat], return_tensors="pt")["pixel_values"]
            if len(pixels) != sum(tiles):
                made = f"the processor made {len(pixels)} tiles of {len(flat)} pages, the geometry {sum(tiles)}"
                raise OcrHeadsError(f"{made}; has this transformers version's InternVL tiling changed?")
            batch["pixel_values"] = pixels
        return batch

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        per_tile = self.processor.image_seq_length
        side = square_side(per_tile, f"{self.family} image_seq_length")
        runs = runs_of(batch["input_ids"][item], self.model.config.image_token_id)
        regions = [self._regions(size) for size in sizes]
        starts = self._starts(runs, [per_tile * len(r) for r in regions], item, sizes)
        target = self.processor.image_processor.size  # every crop and the thumbnail are resized to it
        resized = (target.width, target.height)
        images = []
        for index, (start, size, image_regions) in enumerate(zip(starts, sizes, regions, strict=False)):
            tiles = [Tile(start + k * per_tile, side, side, region, resized) for k, region in enumerate(image_regions)]
            images.append(ImageTokens(index, size, tuple(tiles)))
        return images

    def _starts(self, runs: list[tuple[int, int]], counts: list[int], item: int, sizes) -> list[int]:
        """Each image's first token: the start of its own run (chat), or its offset in the one block (paper)."""
        if self.prompt_format == "paper":
            if len(runs) > 1 or sum(counts) != sum(length for _, length in runs):
                raise OcrHeadsError(
                    f"batch item {item}: the paper format has one block of {sum(counts)} image tokens for "
                    f"{len(sizes)} image(s), but input_ids hold runs of {[length for _, length in runs]}"
                )
            offsets = [sum(counts[:index]) for index in range(len(counts))]
            return [runs[0][0] + offset for offset in offsets] if runs else []
        for index, ((_, length), count, size) in enumerate(zip(runs, counts, sizes, strict=False)):
            if length != count:
                raise OcrHeadsError(
                    f"batch item {item}, image {index}: {length} image tokens, but a {size[0]}x{size[1]} image "
                    f"gives {count // self.processor.image_seq_length} tile(s) of {self.processor.image_seq_length};"
                    " were `sizes` the original image sizes?"
                )
        return [start for start, _ in runs]

    def _regions(self, size: tuple[int, int]) -> list:
        """The original-image rectangle of each tile the processor makes of an image of `size`, in token order."""
        tiling = self.image_settings("crop_to_patches", "min_patches", "max_patches")
        if not (tiling["crop_to_patches"] and tiling["max_patches"] > 1):
            return [whole_image(size)]
        target = self.processor.image_processor.size
        tile = (target.height, target.width)
        cols, rows = get_optimal_tiled_canvas((size[1], size[0]), tile, tiling["min_patches"], tiling["max_patches"])
        crops = crop_regions(size, rows, cols)
        return crops if len(crops) == 1 else [*crops, whole_image(size)]
