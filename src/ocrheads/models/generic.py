"""Any image-text-to-text model in transformers without a hand-written adapter: its geometry is measured, not
declared (ocrheads.probe).

Everything else needs nothing of the family: prompts go through its processor and chat template, the attention
function is registered for its text model, and its image tokens are the positions of the config's image token,
which transformers fills with the projector's rows in order. Each page size is probed once per loaded model; the
probe's rows are handed out to the pages of a prompt in order. A model whose image tokens each see most of the page
(a resampler) has no local geometry: what needs one (OCR scores, overlays, image-receiving sink edits) is refused in
one line that says why, and everything else runs.
"""

from __future__ import annotations

import inspect

import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForImageTextToText, BatchEncoding, PretrainedConfig, ProcessorMixin
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES, processor_class_from_name

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens
from ocrheads.models.base import ModelAdapter, image_only
from ocrheads.probe.geometry import GeometryProbe


def torchvision_only() -> tuple[str, ...]:
    """Image-text-to-text model types whose only image processor needs torchvision, as transformers maps them: every
    page here is prepared by PIL (PIL and torchvision resize text differently), so they cannot be run as the rest."""
    return tuple(
        sorted(
            model_type
            for model_type, backends in IMAGE_PROCESSOR_MAPPING_NAMES.items()
            if isinstance(backends, dict)
            and "pil" not in backends
            and model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        )
    )


def image_token_id(config: PretrainedConfig) -> int | None:
    found = getattr(config, "image_token_id", None)
    return found if found is not None else getattr(config, "image_token_index", None)


class GenericAdapter(ModelAdapter):
    family = "generic"
    model_types = ()
    model_class = AutoModelForImageTextToText

    @classmethod
    def processor_for(cls, name_or_path) -> type[ProcessorMixin]:
        """The checkpoint's own processor class, as transformers maps its model type (without the video processor,
        which cannot load without torchvision)."""
        config = AutoConfig.from_pretrained(name_or_path)
        found = processor_class_from_name(PROCESSOR_MAPPING_NAMES.get(config.model_type) or "")
        if found is None:
            raise OcrHeadsError(f"model type {config.model_type!r} has no processor in transformers; not supported")
        return image_only(found) if "video_processor" in inspect.signature(found).parameters else found

    @classmethod
    def claims(cls, config: PretrainedConfig) -> bool:
        """Any image-text-to-text model type whose image enters the text as tokens of one id."""
        if config.model_type in (alike := torchvision_only()):
            raise OcrHeadsError(
                f"model type {config.model_type!r} has only a torchvision image processor, and ocrheads prepares "
                f"every page with PIL; not supported (alike: {', '.join(alike)})"
            )
        return config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and image_token_id(config) is not None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.probed = GeometryProbe(self)
        self._flat_pages = False  # the processor takes the batch's pages as one list

    def _tokenized(self, prompts: list[str], pages: list[list[Image.Image]] | None) -> BatchEncoding:
        """A list of pages per prompt, or, for a processor that refuses nested lists (GOT-OCR2's), one list of the
        batch's pages, which it hands to the placeholders in order. Prompts without pages go to the tokenizer where
        the processor insists on images (GOT-OCR2's)."""
        if pages is None:
            try:
                return super()._tokenized(prompts, None)
            except ValueError:
                return self.processor.tokenizer(prompts, padding=True, return_tensors="pt")
        if not self._flat_pages:
            try:
                return super()._tokenized(prompts, pages)
            except ValueError:
                self._flat_pages = True
        return super()._tokenized(prompts, [page for item in pages for page in item])

    @property
    def image_placeholder(self) -> str:
        """What the processor expands into an image's tokens."""
        return self.processor.image_token

    @property
    def image_token(self) -> int:
        return image_token_id(self.model.config)

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        positions = torch.nonzero(batch["input_ids"][item] == self.image_token).flatten().tolist()
        images, used = [], 0
        for index, size in enumerate(sizes):
            probed = self.probed(tuple(size))
            if not probed.local:
                raise OcrHeadsError(
                    f"{self.model.config.model_type}: {probed.global_rows} of the {probed.tokens} image tokens of a "
                    f"{size[0]}x{size[1]} page each see most of it (a resampler's latents or learned queries), so no "
                    "token sees a place; OCR scores, overlays and image-receiving sink edits need one; retrieval and "
                    "causal scores, masking and sink edits run"
                )
            images.append(probed.image_tokens(index, positions[used : used + probed.tokens]))
            used += probed.tokens
        if used != len(positions):
            raise OcrHeadsError(
                f"batch item {item}: the probe measured {used} image tokens for its {len(sizes)} page(s), but "
                f"input_ids hold {len(positions)}; the pages of one prompt are not processed as they are alone"
            )
        return images
