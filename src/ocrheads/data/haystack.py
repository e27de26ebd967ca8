"""Haystack text: offline by default (Faker), or a user's corpus from a file or a datasets id.

Every source hands out whole sentences, so needles go in at sentence boundaries (the paper's NIAH script
inserted them at a random character offset, splitting words).
"""

from __future__ import annotations

import bisect
import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from faker import Faker

from ocrheads.errors import DataError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class TextSource(Protocol):
    name: str

    def sentences(self, rng: random.Random, n_chars: int) -> list[str]:
        """Consecutive sentences whose joined length (with single spaces) is at least `n_chars`."""
        ...


class FakerText:
    """English filler sentences from Faker, reseeded per call so a sample depends only on its own rng."""

    name = "faker"

    def __init__(self) -> None:
        self._fake = Faker("en_US")

    def sentences(self, rng: random.Random, n_chars: int) -> list[str]:
        self._fake.seed_instance(rng.getrandbits(64))
        sentences: list[str] = []
        total = -1
        while total < n_chars:
            sentence = self._fake.sentence(nb_words=rng.randint(6, 16))
            sentences.append(sentence)
            total += len(sentence) + 1
        return sentences


@dataclass
class CorpusText:
    """A long text (e.g. Paul Graham essays) read as a ring of sentences; each call starts at a random one."""

    name: str
    corpus: list[str]

    def sentences(self, rng: random.Random, n_chars: int) -> list[str]:
        index = rng.randrange(len(self.corpus))
        sentences: list[str] = []
        total = -1
        while total < n_chars:
            sentence = self.corpus[index % len(self.corpus)]
            sentences.append(sentence)
            total += len(sentence) + 1
            index += 1
        return sentences


def split_sentences(text: str) -> list[str]:
    return [" ".join(part.split()) for part in _SENTENCE_END.split(text) if part.strip()]


def _corpus(name: str, texts: list[str]) -> CorpusText:
    corpus = [sentence for text in texts for sentence in split_sentences(text)]
    if not corpus:
        raise DataError(f"text source {name!r} holds no text; point --text-source at a non-empty corpus")
    return CorpusText(name, corpus)


def _read_file(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read text source {path} ({err}); give a UTF-8 .txt or .jsonl file") from None
    if path.suffix != ".jsonl":
        return [raw]
    texts = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            texts.append(str(json.loads(line)["text"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{path}:{number}: expected a JSON object with a 'text' field") from None
    return texts


def _read_hub(spec: str) -> list[str]:
    """`hf:NAME[:CONFIG[:SPLIT]]`, NAME a hub id or a local dataset folder, read with the datasets library."""
    name, config, split = ([*spec.split(":"), None, None])[:3]
    try:
        import datasets
    except ImportError:
        raise DataError("reading a hub text source needs the datasets library: pip install datasets") from None
    try:
        table = datasets.load_dataset(name, config, split=split or "train")
    except Exception as err:
        raise DataError(f"cannot load text source hf:{spec} ({err}); check the id, config and split") from None
    if "text" not in table.column_names:
        raise DataError(f"text source hf:{spec} has no 'text' column (columns: {table.column_names})")
    return [str(text) for text in table["text"]]


def open_text_source(spec: str = "faker") -> TextSource:
    """`faker`, a .txt/.jsonl path, or `hf:NAME[:CONFIG[:SPLIT]]`.

    For the paper's haystack: `hf:opencompass/NeedleBench:en_haystack_texts:test` (Paul Graham essays).
    """
    if spec == "faker":
        return FakerText()
    if spec.startswith("hf:"):
        return _corpus(spec, _read_hub(spec[3:]))
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"text source {spec!r} is neither 'faker', an existing file, nor hf:NAME")
    return _corpus(spec, _read_file(path))


@dataclass(frozen=True)
class Inserted:
    text: str
    needle_start: int  # offset of the needle in `text`


def insert_at_boundary(sentences: list[str], needle: str, depth: float) -> Inserted:
    """Join sentences with spaces and put `needle` at the last sentence boundary at or before `depth` (0..1)."""
    if not sentences:
        raise DataError("the haystack is empty; give a text source with at least one sentence")
    starts = list(itertools.accumulate((len(sentence) + 1 for sentence in sentences), initial=0))
    boundary = bisect.bisect_right(starts, depth * starts[-1]) - 1
    before = " ".join(sentences[:boundary])
    after = " ".join(sentences[boundary:])
    prefix = f"{before} " if before else ""
    return Inserted(prefix + needle + (f" {after}" if after else ""), len(prefix))
