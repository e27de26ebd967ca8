"""Evidence key sets: the image tokens that see each answer unit's box, split into disjoint atoms.

Neighbouring characters often share a token, so unions of units overlap. Tokens are grouped by the exact set
of units they see (an atom); the attention mass on any union of units is then the sum over the atoms that
touch it, exactly, from one mass per atom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ocrheads.data.manifest import Sample
from ocrheads.geometry import ImageTokens, box_tokens
from ocrheads.scoring.options import ScoringOptions


@dataclass(frozen=True)
class Evidence:
    atoms: tuple[frozenset[int], ...]  # the answer units each atom's tokens see
    positions: tuple[tuple[int, ...], ...]  # each atom's token positions in the (padded) batch

    def touching(self, units: tuple[int, ...]) -> np.ndarray:
        """Boolean per atom: does it see any of `units`?"""
        return np.array([not atom.isdisjoint(units) for atom in self.atoms], dtype=bool)

    def hits(self, keys: torch.Tensor, units: tuple[int, ...], length: int) -> torch.Tensor:
        """Boolean like `keys`: is each key position an evidence token of any of `units`?"""
        touching = torch.from_numpy(np.append(self.touching(units), False))  # atom -1 (no evidence) reads the last
        return touching[torch.from_numpy(self.atom_of(length))[keys]]

    def atom_of(self, length: int) -> np.ndarray:
        """Atom index of every key position (-1: no evidence)."""
        index = np.full(length, -1, dtype=np.int64)
        for atom, positions in enumerate(self.positions):
            index[list(positions)] = atom
        return index


def answer_units(sample: Sample, options: ScoringOptions) -> list[tuple[int, tuple[int, int, int, int]] | None]:
    """(page, box) per answer unit: characters, or words when the paper code's pairing meets a multi-word answer."""
    if options.alignment == "position" and len(sample.answer.split()) > 1:
        return [(word.page, word.box) for word in sample.answer_words]
    return [(char.page, char.box) if char.box is not None else None for char in sample.answer_chars]


def evidence(units, images: list[ImageTokens], options: ScoringOptions) -> Evidence:
    seen: dict[int, set[int]] = {}
    for unit, where in enumerate(units):
        if where is None:
            continue
        page, box = where
        rule, threshold, rounding = options.evidence_rule, options.evidence_threshold, options.box_rounding
        for position in box_tokens(box, images[page], rule, threshold, rounding):
            seen.setdefault(position, set()).add(unit)
    atoms: dict[frozenset[int], list[int]] = {}
    for position, sees in sorted(seen.items()):
        atoms.setdefault(frozenset(sees), []).append(position)
    return Evidence(tuple(atoms), tuple(tuple(p) for p in atoms.values()))
