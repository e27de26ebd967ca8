"""What every scoring kind shares about prompts and answers: how a sample is put to the model, and how the
tokens it writes (or is given) line up with the answer."""

from __future__ import annotations

from PIL import Image
from transformers import BatchEncoding

from ocrheads.data.manifest import Sample
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.alignment import align_by_offsets, align_by_position
from ocrheads.scoring.options import ScoringOptions


def text_prompt(sample: Sample, question: str | None = None) -> str:
    """A text sample's context, then its question (the sample's own wording unless `question` is given)."""
    return f"{sample.context}\n\n{sample.question if question is None else question}"


def sample_prompt(adapter: ModelAdapter, sample: Sample) -> str:
    """How every kind puts a sample to the model: its pages then its question (image samples), or its context then
    its question (text samples), the question worded as the run's prompt format words it for the sample's task."""
    question = adapter.question(sample.task, sample.question)
    if sample.modality == "image":
        return adapter.prompt(question, len(sample.pages))
    return adapter.prompt(text_prompt(sample, question), 0)


def encode_samples(adapter: ModelAdapter, samples: list[Sample], pages: list[list[Image.Image]]) -> BatchEncoding:
    """The samples' prompts (sample_prompt) with their pages, as one batch."""
    return adapter.encode([sample_prompt(adapter, s) for s in samples], pages)


def answer_ids(adapter: ModelAdapter, answer: str) -> list[int]:
    """An answer's token ids as the tokenizer writes it alone, without special tokens: the paper code's rule for both
    of its families (Qwen2-VL's tokenizer adds none; InternVL's drops the BOS it adds, `input_ids[1:]`)."""
    return adapter.processor.tokenizer(answer, add_special_tokens=False).input_ids


def gold_ids(adapter: ModelAdapter, samples: list[Sample]) -> list[list[int]]:
    """Each sample's gold answer as answer_ids writes it."""
    return [answer_ids(adapter, s.answer) for s in samples]


def answer_tokens(adapter: ModelAdapter, sample: Sample, written: list[int], units: int, options: ScoringOptions):
    """The written tokens that stand for answer units, c, and the written text."""
    tokenizer = adapter.processor.tokenizer
    text = tokenizer.decode(written, skip_special_tokens=True)
    if options.alignment == "offsets":
        prefixes = [tokenizer.decode(written[: n + 1], skip_special_tokens=True) for n in range(len(written))]
        tokens, c = align_by_offsets(sample.answer, prefixes)
    else:
        tokens, c = align_by_position(answer_ids(adapter, sample.answer), written, units)
    return tokens, c, text


def gold_tokens(adapter: ModelAdapter, samples: list[Sample], options: ScoringOptions) -> list[list[int]] | None:
    """The gold answers' token ids when the options teacher-force them, else None (the model writes its own)."""
    return gold_ids(adapter, samples) if options.answers == "gold" else None
