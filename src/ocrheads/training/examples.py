"""Training and held-out examples of the demo task, encoded the way the adapters prompt, and exact match.

Every example comes from a seeded generator (sample i depends only on the seed and i), so training runs and
held-out checks are reproducible; held-out indices start where training indices can never reach.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from ocrheads.data.haystack import FakerText
from ocrheads.data.samples import Content, text_sample
from ocrheads.demo.task import DemoTask, Glyph, PageRenderer
from ocrheads.geometry import ImageTokens, point_tokens
from ocrheads.models.qwen_vl import QwenVLAdapter
from ocrheads.scoring.answers import text_prompt
from ocrheads.training.architecture import END_OF_TURN

HELD_OUT_FROM = 10**9  # sample indices from here on are never trained on
TRAINING_DIGITS = 16  # the longest training key: it still fits on one line of the demo page


@dataclass
class Example:
    content: Content
    pages: list  # rendered pages; empty for a text example
    glyphs: list[Glyph] = field(default_factory=list)  # every inked character on the pages, with its box


class Examples:
    """Seeded training and held-out examples of the demo task."""

    def __init__(self, task: DemoTask, seed: int):
        self.task, self.seed = task, seed
        self.source = FakerText()
        self.renderer = PageRenderer(task)

    def example(
        self,
        index: int,
        modality: str,
        context_length: int | None = None,
        digits: int | None = None,
    ) -> Example:
        """Held-out examples (no context_length) are drawn on full pages; training ones on fitted pages."""
        content = self.task.content(index, self.source, seed=self.seed, context_length=context_length, digits=digits)
        if modality == "text":
            return Example(content, [])
        pages, glyphs = self.renderer.render(content, index, fit=context_length is not None)
        return Example(content, pages, glyphs)

    def training_batch(self, first: int, size: int, modality: str) -> list[Example]:
        """Keys of 1 to `TRAINING_DIGITS` digits in haystacks of the task's length times u² (u uniform): mostly
        short, sometimes a full page. Long keys give many supervised copies per example, and keys with repeated
        digits force copying by position, not by the previous digit, so 5-digit keys come out in order. A batch
        shares one haystack length, so it pads to what it holds, not to its longest example (three times faster)."""
        length = round(self.task.context_length * random.Random(f"{self.seed}:length:{first}").random() ** 2)
        batch = []
        for index in range(first, first + size):
            digits = random.Random(f"{self.seed}:digits:{index}").randint(1, TRAINING_DIGITS)
            batch.append(self.example(index, modality, length, digits))
        return batch


def prompt_of(adapter: QwenVLAdapter, example: Example) -> str:
    if example.pages:
        return adapter.prompt(example.content.question, len(example.pages))
    return adapter.prompt(text_prompt(text_sample(example.content)), 0)


def encode_for_training(adapter: QwenVLAdapter, examples: list[Example]) -> dict:
    """Prompt + answer + end of turn, right-padded, with labels on the answer and end of turn only."""
    tokenizer = adapter.processor.tokenizer
    texts = [prompt_of(adapter, e) + e.content.answer + END_OF_TURN for e in examples]
    tokenizer.padding_side = "right"
    images = [e.pages for e in examples] if examples[0].pages else None
    batch = dict(adapter.processor(text=texts, images=images, padding=True, return_tensors="pt"))
    labels = torch.full_like(batch["input_ids"], -100)
    for item, example in enumerate(examples):
        answer = tokenizer(example.content.answer + END_OF_TURN, add_special_tokens=False)["input_ids"]
        end = int(batch["attention_mask"][item].sum())
        labels[item, end - len(answer) : end] = batch["input_ids"][item, end - len(answer) : end]
        if labels[item, end - len(answer) : end].tolist() != answer:
            raise AssertionError(f"answer tokens of {example.content.id} do not close its training text")
    batch["labels"] = labels
    if images:
        tokens = adapter.image_tokens(batch, [[page.size for page in e.pages] for e in examples])
        batch["glyph_targets"] = glyph_targets(adapter, tokens, examples)
        batch["key_tokens"] = key_tokens(tokens, examples)
    return batch


def glyph_targets(
    adapter: QwenVLAdapter, tokens: list[list[ImageTokens]], examples: list[Example]
) -> list[tuple[int, int, int, int]]:
    """(batch item, token position, character, character to its left) for every inked character, at the token
    that sees its centre (on the demo task's grid, the one token that sees its ink). Left of a line's first
    character is a space: the space the line broke at, or nothing. `tokens`: the batch's image tokens."""
    tokenizer = adapter.processor.tokenizer
    ids = {}

    def vocabulary_id(char: str) -> int:
        if char not in ids:
            ids[char] = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(char)[0])
        return ids[char]

    found = []
    for item, (example, images) in enumerate(zip(examples, tokens, strict=True)):
        left = None
        for glyph in example.glyphs:
            y0, y1 = glyph.box[1], glyph.box[3]
            beside = left is not None and left.offset == glyph.offset - 1 and left.page == glyph.page
            beside = beside and left.box[1] < y1 and y0 < left.box[3]  # and on the same line
            previous = vocabulary_id(left.char if beside else " ")
            for position in point_tokens(_centre(glyph.box), images[glyph.page]):
                found.append((item, position, vocabulary_id(glyph.char), previous))
            left = glyph
    return found


def key_tokens(tokens: list[list[ImageTokens]], examples: list[Example]) -> list[list[int]]:
    """For each batch item, the image token that shows each character of its key, in order."""
    found = []
    for example, images in zip(examples, tokens, strict=True):
        start, end = example.content.answer_start, example.content.answer_start + len(example.content.answer)
        key = [glyph for glyph in example.glyphs if start <= glyph.offset < end]
        found.append([point_tokens(_centre(glyph.box), images[glyph.page])[0] for glyph in key])
    return found


def _centre(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def exact_matches(adapter: QwenVLAdapter, examples: list[Example], batch_size: int = 16) -> list[bool]:
    """Greedy replies against the keys, through the same prompt path as scoring and evaluation."""
    tokenizer = adapter.processor.tokenizer
    hits = []
    for first in range(0, len(examples), batch_size):
        chunk = examples[first : first + batch_size]
        batch = adapter.encode([prompt_of(adapter, e) for e in chunk], [e.pages for e in chunk])
        with torch.no_grad():
            out = adapter.generate(batch, len(chunk[0].content.answer) + 2)
        for example, ids in zip(chunk, out[:, batch["input_ids"].shape[1] :].tolist(), strict=True):
            hits.append(tokenizer.decode(adapter.until_end(ids)).strip() == example.content.answer)
    return hits


def held_out(examples: Examples, n: int, modality: str) -> list[Example]:
    return [examples.example(HELD_OUT_FROM + i, modality) for i in range(n)]
