"""Which answer characters each written token stands for, and how much of the answer was written.

`offsets` (default) aligns through characters: the written text is matched against the answer (exactly, or
by their longest common substring), and a token stands for the answer characters its own text covers.
`position` is the paper code's pairing: the b-th written token whose id occurs among the answer's token ids
stands for the b-th answer unit (METHOD.md 2.3), with c the token-level longest common run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

Alignment = Literal["offsets", "position"]


@dataclass(frozen=True)
class AnswerToken:
    index: int  # position of the token among the written tokens
    units: tuple[int, ...]  # the answer units it stands for: characters, or words (paper pairing, multi-word)


def token_spans(texts: Sequence[str]) -> list[tuple[int, int]]:
    """Character span of each token in the concatenated text, from the cumulative decoded texts of prefixes."""
    spans, start = [], 0
    for text in texts:
        spans.append((start, len(text)))
        start = len(text)
    return spans


def longest_common_run(a: Sequence, b: Sequence) -> tuple[int, int, int]:
    """(start in a, start in b, length) of the longest common contiguous run: the earliest in a, then in b, where
    several are longest (so a whole occurrence of `a` in `b` is its first)."""
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return match.a, match.b, match.size


def align_by_offsets(answer: str, prefix_texts: Sequence[str]) -> tuple[list[AnswerToken], float]:
    """Tokens that write answer characters, and c = fraction of the answer written contiguously.

    prefix_texts[n] is the decoded text of the first n+1 written tokens.
    """
    written = prefix_texts[-1] if prefix_texts else ""
    answer_start, written_start, size = longest_common_run(answer, written)  # the whole answer where it was written
    tokens = []
    for index, (start, end) in enumerate(token_spans(prefix_texts)):
        chars = range(max(start, written_start), min(end, written_start + size))
        if len(chars):
            tokens.append(AnswerToken(index, tuple(answer_start + g - written_start for g in chars)))
    return tokens, size / len(answer)


def align_by_position(
    answer_ids: Sequence[int], written_ids: Sequence[int], units: int
) -> tuple[list[AnswerToken], float]:
    """The paper code's pairing: b-th written token with an answer id <-> b-th unit; c over token ids."""
    ids = set(answer_ids)
    matches = [index for index, token in enumerate(written_ids) if token in ids]
    tokens = [AnswerToken(index, (unit,)) for unit, index in enumerate(matches[:units])]
    return tokens, longest_common_run(list(answer_ids), list(written_ids))[2] / len(answer_ids)
