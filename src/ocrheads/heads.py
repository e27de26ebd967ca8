"""Attention heads by name, and each head's list of scores in the paper's reference format.

A score list holds one value per scored entry (an answer token of a sample for OCR scores, a sample for
retrieval scores). The paper's files are `{"l{L}_h{H}": [values...]}`; heads may have lists of different
lengths (its scorer dropped failing samples part-way through the head loop), so lists are kept per head.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocrheads.atomic import atomic_write_text
from ocrheads.errors import OcrHeadsError

_NAME = re.compile(r"l(\d+)_h(\d+)")


@dataclass(frozen=True, order=True)
class Head:
    layer: int
    head: int

    @property
    def name(self) -> str:
        return f"l{self.layer}_h{self.head}"

    @classmethod
    def parse(cls, name: str) -> Head:
        match = _NAME.fullmatch(name)
        if match is None:
            raise OcrHeadsError(f"{name!r} is not a head name; heads are named l<layer>_h<head>, e.g. l9_h0")
        return cls(int(match[1]), int(match[2]))


def check_heads(heads: list[Head], grid: tuple[int, int], what: str) -> None:
    """Refuse heads that the model does not have (a head list made for another model, or a typo)."""
    layers, per_layer = grid
    outside = [head.name for head in heads if not (0 <= head.layer < layers and 0 <= head.head < per_layer)]
    if outside:
        raise OcrHeadsError(
            f"{what}: {', '.join(outside[:5])} outside the model's {layers}x{per_layer} heads "
            f"(layers 0..{layers - 1}, heads 0..{per_layer - 1}); was the list made for another model?"
        )


class HeadScores:
    """Per-head score lists over a full layers x heads grid."""

    def __init__(self, lists: dict[Head, np.ndarray], layers: int, heads: int):
        outside = [head.name for head in lists if not (head.layer < layers and head.head < heads)]
        if outside:
            raise OcrHeadsError(f"head(s) {', '.join(outside[:5])} lie outside the {layers}x{heads} grid")
        if len(lists) < layers * heads:  # counted first: a stray l100000_h100000 must not mean 10^10 lookups
            first = next(Head(layer, h) for layer in range(layers) for h in range(heads) if Head(layer, h) not in lists)
            raise OcrHeadsError(
                f"no scores for {layers * heads - len(lists)} head(s) of the {layers}x{heads} grid, e.g. {first.name}"
            )
        self.layers, self.heads = layers, heads
        self.lists = {head: np.asarray(lists[head], dtype=np.float64) for head in sorted(lists)}

    @property
    def grid(self) -> tuple[int, int]:
        return self.layers, self.heads

    def order(self) -> list[Head]:
        """Every head, layer-major: the order ties are broken in."""
        return [Head(layer, h) for layer in range(self.layers) for h in range(self.heads)]

    def _per_head(self, statistic) -> np.ndarray:
        values = [statistic(self.lists[head]) if len(self.lists[head]) else 0.0 for head in self.order()]
        return np.array(values, dtype=np.float64).reshape(self.grid)

    def means(self) -> np.ndarray:
        """(layers, heads) mean score; a head without entries scores 0."""
        return self._per_head(np.mean)

    def frequency_above(self, threshold: float) -> np.ndarray:
        """(layers, heads) fraction of entries strictly above `threshold` (the paper's activation frequency)."""
        return self._per_head(lambda values: float(np.mean(values > threshold)))

    def zero_fraction(self) -> np.ndarray:
        return self._per_head(lambda values: float(np.mean(values == 0)))

    def check_grid(self, layers: int, heads: int, what: str) -> None:
        """Refuse scores made for another model."""
        if self.grid != (layers, heads):
            raise OcrHeadsError(
                f"{what} scores {self.layers}x{self.heads} heads, but the model has {layers}x{heads}; "
                "were the scores made for another model?"
            )

    @classmethod
    def from_reference(cls, path: str | Path, grid: tuple[int, int] | None = None) -> HeadScores:
        """Read a `{"l{L}_h{H}": [values...]}` file; the grid is the smallest that holds every head unless given."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise OcrHeadsError(f"cannot read score file {path}: {err}") from None
        if not isinstance(raw, dict) or not raw:
            raise OcrHeadsError(f"{path} must hold a JSON object of head name -> list of scores")
        lists = {}
        for name, values in raw.items():
            head = Head.parse(name)
            if not isinstance(values, list) or not all(_finite_number(v) for v in values):
                raise OcrHeadsError(f"{path}: head {name} must map to a list of finite numbers")
            lists[head] = np.array(values, dtype=np.float64)
        layers, heads = grid or (max(h.layer for h in lists) + 1, max(h.head for h in lists) + 1)
        return cls(lists, layers, heads)

    def to_reference(self, path: str | Path) -> None:
        lists = {head.name: [_plain(v) for v in values] for head, values in self.lists.items()}
        atomic_write_text(path, json.dumps(lists, indent=1) + "\n")


def _finite_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: float) -> int | float:
    """Integral values as ints, so 0/1 lists round-trip to the reference files' own form."""
    return int(value) if float(value).is_integer() else float(value)
