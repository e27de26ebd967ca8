"""The passkey task (and its single-character case study), after the paper's `step1_passkey.py`.

The rendered context is the soft prompt followed by a haystack with the needle inserted at a sentence boundary.
As in the paper, the needle's second half ("K is the pass key.") is left out, so the key occurs once.
Context lengths count haystack characters, as in the paper's source dataset.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator, Sequence

from ocrheads.data.haystack import TextSource, insert_at_boundary
from ocrheads.data.samples import Content
from ocrheads.errors import DataError

INTRO = (
    "There is an important info hidden inside a lot of irrelevant text. "
    "Find it and memorize them. I will quiz you about the important information there."
)
NEEDLE = "The pass key is {key}. Remember it."
QUESTION = "What is the pass key?"
DEFAULT_LENGTHS = (1024, 2048, 4096, 8192)
CASE_STUDY_ALPHABET = string.digits + string.ascii_lowercase


def sample_rng(seed: int, task: str, index: int) -> random.Random:
    """A sample's own generator: sample i is the same whatever n is, so runs can grow, shard and resume."""
    return random.Random(f"{seed}:{task}:{index}")


def _passkey_content(
    sample_id: str, task: str, key: str, length: int, rng: random.Random, source: TextSource, intro: bool = True
) -> Content:
    depth = rng.random()
    needle = NEEDLE.format(key=key)
    haystack = insert_at_boundary(source.sentences(rng, length), needle, depth)
    prefix = INTRO + " " if intro else ""
    return Content(
        id=sample_id,
        task=task,
        question=QUESTION,
        answer=key,
        context=prefix + haystack.text,
        answer_start=len(prefix) + haystack.needle_start + NEEDLE.index("{key}"),
        meta={"context_length": length, "depth": round(depth, 6), "text_source": source.name},
    )


def passkey_contents(
    n: int,
    source: TextSource,
    *,
    seed: int = 0,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    digits: int = 5,
    intro: bool = True,
) -> Iterator[Content]:
    """n samples, length-major like the paper: the first n/len(lengths) at lengths[0], and so on."""
    if n < 1 or not lengths or min(lengths) < 1 or digits < 1:
        raise DataError("passkey needs --n >= 1, at least one positive --lengths value and --digits >= 1")
    for index in range(n):
        length = lengths[index * len(lengths) // n]
        yield passkey_content(index, source, seed=seed, length=length, digits=digits, intro=intro)


def passkey_content(
    index: int, source: TextSource, *, seed: int, length: int, digits: int, intro: bool = True
) -> Content:
    """Passkey sample `index` of a seed: a `digits`-long key (no leading zero) in `length` haystack characters,
    after the paper's intro unless `intro` is False."""
    rng = sample_rng(seed, "passkey", index)
    key = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(digits - 1))
    return _passkey_content(f"passkey-{index:05d}", "passkey", key, length, rng, source, intro)


def chars_contents(
    per_char: int, source: TextSource, *, seed: int = 0, alphabet: str = CASE_STUDY_ALPHABET, length: int = 1024
) -> Iterator[Content]:
    """The case study: each character of `alphabet` as a one-character passkey, character-major."""
    if per_char < 1 or not alphabet or length < 1:
        raise DataError("chars needs --per-char >= 1, a non-empty --alphabet and a positive --length")
    if any(char.isspace() for char in alphabet) or len(set(alphabet)) != len(alphabet):
        raise DataError(f"--alphabet {alphabet!r} must hold distinct characters with ink (no spaces)")
    index = 0
    for char in alphabet:
        for _ in range(per_char):
            rng = sample_rng(seed, "chars", index)
            yield _passkey_content(f"chars-{index:05d}", "chars", char, length, rng, source)
            index += 1
