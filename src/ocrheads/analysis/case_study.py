"""The per-character case study (METHOD.md 4.2): which heads read each single character of the `chars` task."""

from __future__ import annotations

import numpy as np

from ocrheads.heads import Head


def character_heads(
    answers: dict[str, str], columns: dict[str, np.ndarray], grid: tuple[int, int], top: int = 5
) -> dict[str, dict]:
    """Per answer character: the mean score of every head over that character's scored entries, and its top heads.

    answers: sample id -> its answer (one character in the `chars` task); columns: the tidy table's `sample`,
    `layer`, `head` and `value` columns. Characters keep the order they first appear in `answers`; ties between
    heads go to the lower layer, then the lower head, as in selection. Characters never scored are left out.
    Each row's character is found once, by sample, so the cost is one pass over the table per character.
    """
    layers, heads = grid
    ids, sample_of_row = np.unique(np.asarray(columns["sample"], dtype=object), return_inverse=True)
    code = {char: n for n, char in enumerate(dict.fromkeys(answers.values()))}
    code_of_id = np.array([code.get(answers.get(i), -1) for i in ids], dtype=np.int64)
    char_of_row = code_of_id[sample_of_row]
    flat = np.asarray(columns["layer"], dtype=np.int64) * heads + np.asarray(columns["head"], dtype=np.int64)
    value = np.asarray(columns["value"], dtype=np.float64)
    found = {}
    for char, number in code.items():
        rows = char_of_row == number
        if not rows.any():
            continue
        sums = np.bincount(flat[rows], weights=value[rows], minlength=layers * heads)
        counts = np.bincount(flat[rows], minlength=layers * heads)
        means = np.where(counts > 0, sums / counts.clip(min=1), -np.inf)  # heads of unscored layers never rank
        order = np.argsort(-means, kind="stable")[: min(top, int((counts > 0).sum()))]
        found[char] = {
            "entries": int(rows.sum()) // int((counts > 0).sum()),
            "samples": len(np.unique(sample_of_row[rows])),
            "top": [[Head(int(i) // heads, int(i) % heads).name, round(float(means[i]), 4)] for i in order],
        }
    return found


def top_head_counts(characters: dict[str, dict]) -> dict[str, dict[str, int]]:
    """How often each head is a character's top-1, and how often it appears in a top list (the paper's tallies)."""
    first: dict[str, int] = {}
    anywhere: dict[str, int] = {}
    for found in characters.values():
        names = [name for name, _ in found["top"]]
        first[names[0]] = first.get(names[0], 0) + 1
        for name in names:
            anywhere[name] = anywhere.get(name, 0) + 1
    return {"top1": _most_first(first), "in_top": _most_first(anywhere)}


def _most_first(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], Head.parse(item[0]))))
