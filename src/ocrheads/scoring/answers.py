"""What every scoring kind shares about prompts and answers: how a sample is put to the model, and how the
tokens it writes (or is given) line up with the answer."""

from __future__ import annotations

from PIL import Image
from transformers import BatchEncoding

from ocrheads.data.manifest import Sample
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.alignment import align_by_offsets, align_by_position
from ocrheads.scoring.options import ScoringOptions


def text_prompt(sample: Sample) -> str:
    return f"{sample.context}\n\n{sample.question}"


def encode_samples(adapter: ModelAdapter, samples: list[Sample], pages: list[list[Image.Image]]) -> BatchEncoding:
    """Image samples with their pages, text samples as context then question (as the OCR and retrieval scores)."""
    prompts = [
        adapter.prompt(s.question, len(s.pages)) if s.modality == "image" else adapter.prompt(text_prompt(s), 0)
        for s in samples
    ]
    return adapter.encode(prompts, pages)


def gold_ids(adapter: ModelAdapter, samples: list[Sample]) -> list[list[int]]:
    """Each sample's gold answer as the tokenizer writes it alone."""
    return [adapter.processor.tokenizer(s.answer, add_special_tokens=False).input_ids for s in samples]


def answer_tokens(adapter: ModelAdapter, sample: Sample, written: list[int], units: int, options: ScoringOptions):
    """The written tokens that stand for answer units, c, and the written text."""
    tokenizer = adapter.processor.tokenizer
    text = tokenizer.decode(written, skip_special_tokens=True)
    if options.alignment == "offsets":
        prefixes = [tokenizer.decode(written[: n + 1], skip_special_tokens=True) for n in range(len(written))]
        tokens, c = align_by_offsets(sample.answer, prefixes)
    else:
        tokens, c = align_by_position(tokenizer(sample.answer, add_special_tokens=False).input_ids, written, units)
    return tokens, c, text


def gold_tokens(adapter: ModelAdapter, samples: list[Sample], options: ScoringOptions) -> list[list[int]] | None:
    """The gold answers' token ids when the options teacher-force them, else None (the model writes its own)."""
    return gold_ids(adapter, samples) if options.answers == "gold" else None
