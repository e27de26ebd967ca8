"""The dataset manifest: one JSON record per sample, enough to score heads without re-rendering anything."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ocrheads.data.render import Box
from ocrheads.errors import BadPage, DataError

MANIFEST = "manifest.jsonl"
GENERATOR_VERSION = "1"


class CharBox(BaseModel):
    """One answer character: its offset in the sample context and, when it has ink, its box on its page."""

    model_config = ConfigDict(frozen=True)
    char: str
    offset: int
    page: int | None = None
    box: Box | None = None


class WordBox(BaseModel):
    """A word of the answer on one line: the union of its characters' ink boxes."""

    model_config = ConfigDict(frozen=True)
    word: str
    offset: int
    page: int
    box: Box


class RenderSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    font: str
    font_file: str
    font_size: int
    wrap_width: int | None  # None for laid-out documents, which are not wrapped
    line_height: int
    lines_per_page: int
    margin: int
    pitch: int | None = None  # typewriter layout: the cell width of every character
    generator_version: str = GENERATOR_VERSION


class Sample(BaseModel):
    """A question about a context, answered by the span `answer_span` of that context.

    Image samples show the context on `pages` (PNG paths relative to the dataset folder, in reading order);
    text samples give it as plain text.
    """

    model_config = ConfigDict(frozen=True)
    id: str
    task: str
    modality: Literal["image", "text"]
    question: str
    answer: str
    context: str
    answer_span: tuple[int, int]
    pages: list[str] = []
    page_sizes: list[tuple[int, int]] = []
    evidence_pages: list[int] = []
    answer_chars: list[CharBox] = []
    answer_words: list[WordBox] = []
    render: RenderSettings | None = None
    meta: dict[str, float | int | str] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Sample:
        start, end = self.answer_span
        if not 0 <= start < end <= len(self.context) or self.context[start:end] != self.answer:
            raise ValueError(f"answer_span {self.answer_span} does not hold the answer {self.answer!r} in the context")
        if len(self.page_sizes) != len(self.pages):
            raise ValueError("page_sizes must give one (width, height) per page")
        if (self.modality == "image") != bool(self.pages):
            raise ValueError("an image sample shows its context on pages, a text sample on none")
        if any(width < 1 or height < 1 for width, height in self.page_sizes):
            raise ValueError(f"page_sizes {self.page_sizes} must be at least 1x1 pixels each")
        if outside := [page for page in self.evidence_pages if not 0 <= page < len(self.pages)]:
            raise ValueError(f"evidence_pages {outside} are not pages of a sample with {len(self.pages)} pages")
        self._check_units(start, end)
        for item in (*self.answer_chars, *self.answer_words):
            if item.page is None:
                if item.box is not None:
                    raise ValueError(f"a box {item.box} without the page it is on; give its page index")
                continue
            if not 0 <= item.page < len(self.pages):
                raise ValueError(f"a box points at page {item.page}, but the sample has {len(self.pages)} pages")
            if item.box is None:  # on the page without ink (a blank character)
                continue
            width, height = self.page_sizes[item.page]
            x0, y0, x1, y1 = item.box
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise ValueError(f"box {item.box} is empty or outside its {width}x{height} page {item.page}")
        return self

    def _check_units(self, start: int, end: int) -> None:
        """Answer characters are none or one per answer character, in order; words are pieces of the answer."""
        if self.answer_chars:
            found = [(char.char, char.offset) for char in self.answer_chars]
            if found != [(self.context[offset], offset) for offset in range(start, end)]:
                raise ValueError(f"answer_chars must be the answer's {end - start} characters in order, each at its "
                                 f"context offset {start} to {end - 1}; they are {found[:8]}")  # fmt: skip
        for word in self.answer_words:
            inside = start <= word.offset and word.offset + len(word.word) <= end
            if not word.word or not inside or self.context[word.offset : word.offset + len(word.word)] != word.word:
                raise ValueError(f"answer word {word.word!r} at offset {word.offset} is not a piece of the answer "
                                 f"{self.answer!r} at {start}")  # fmt: skip


def sample_line(sample: Sample) -> str:
    return sample.model_dump_json() + "\n"


def read_manifest(folder: str | Path) -> list[Sample]:
    """Read and validate every record; a bad record is reported with its line number."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder} has no {MANIFEST}; create a dataset with `ocrheads data ...`")
    samples = []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            samples.append(Sample.model_validate(json.loads(line.decode("utf-8"))))
        except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as err:
            raise DataError(f"{path}:{number}: malformed sample record ({err}); regenerate the dataset") from None
    return samples


def manifest_sha256(folder: str | Path) -> str:
    """The dataset's fingerprint in run configs: a run resumed on changed samples is refused."""
    return hashlib.sha256((Path(folder) / MANIFEST).read_bytes()).hexdigest()


def open_page(folder: str | Path, sample: Sample, page: int) -> Image.Image:
    """Page `page` of an image sample, as RGB; a missing or corrupt file is a BadPage that names the sample."""
    path = Path(folder) / sample.pages[page]
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as err:
        raise BadPage(sample.id, str(path), str(err)) from None


def open_pages(folder: str | Path, sample: Sample) -> list[Image.Image]:
    """Every page of a sample, as RGB (none for a text sample)."""
    return [open_page(folder, sample, page) for page in range(len(sample.pages))]


def open_samples(
    folder: str | Path, samples: list[Sample], stop_at_bad_page: bool = False
) -> tuple[list[Sample], list[list[Image.Image]], list[BadPage]]:
    """The samples whose pages all read, with their pages, and the BadPage of each that does not (raised at the first
    where a run is asked to stop there)."""
    readable, pages, bad = [], [], []
    for sample in samples:
        try:
            pages.append(open_pages(folder, sample))
            readable.append(sample)
        except BadPage as err:
            if stop_at_bad_page:
                raise
            bad.append(err)
    return readable, pages, bad
