"""Attention heads by name, and each head's list of scores in the paper's reference format.

A score list holds one value per scored entry (an answer token of a sample for OCR scores, a sample for
retrieval scores). The paper's files are `{"l{L}_h{H}": [values...]}`; heads may have lists of different
lengths (its scorer dropped failing samples part-way through the head loop), so lists are kept per head.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocrheads.atomic import atomic_write_text
from ocrheads.errors import OcrHeadsError

_NAME = re.compile(r"l(\d+)_h(\d+)")

# What a text layer is, for the scores and edits that apply to it: softmax self-attention (an argmax, captured rows,
# edits), attention without softmax weights to read (linear attention, state-space or convolution layers: nothing
# to capture or edit), or cross-attention to an image (Llama 3.2 Vision).
ATTENTION, LINEAR, CROSS = "attention", "linear", "cross"
LAYER_KIND_NAMES = {ATTENTION: "attention", LINEAR: "linear attention", CROSS: "image cross-attention"}
SOFTMAX_LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")  # transformers' `layer_types`


def layer_kinds_of(config) -> tuple[str, ...]:
    """Each text layer's kind from a model config: CROSS for its `cross_attention_layers` (Llama 3.2 Vision's), then
    by `layer_types` where it has them: a layer of another type than softmax attention (Qwen3.5's linear attention)
    has no attention weights."""
    text = config.get_text_config()
    types = getattr(text, "layer_types", None) or ["full_attention"] * text.num_hidden_layers
    cross = set(getattr(text, "cross_attention_layers", None) or ())
    return tuple(
        CROSS if layer in cross else ATTENTION if kind in SOFTMAX_LAYER_TYPES else LINEAR
        for layer, kind in enumerate(types)
    )


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


def check_heads(heads: list[Head], grid: tuple[int, int], what: str, layer_kinds: Sequence[str] = ()) -> None:
    """Refuse heads that the model does not have (a head list made for another model, or a typo), and, given the
    layers' kinds, heads of layers without attention weights, which nothing ocrheads does can reach."""
    layers, per_layer = grid
    outside = [head.name for head in heads if not (0 <= head.layer < layers and 0 <= head.head < per_layer)]
    if outside:
        raise OcrHeadsError(
            f"{what}: {', '.join(outside[:5])} outside the model's {layers}x{per_layer} heads "
            f"(layers 0..{layers - 1}, heads 0..{per_layer - 1}); was the list made for another model?"
        )
    linear = [head.name for head in heads if layer_kinds and layer_kinds[head.layer] == LINEAR]
    if linear:
        raise OcrHeadsError(f"{what}: {', '.join(linear[:5])} lie in linear-attention layers, which have no attention "
                            "weights to capture or edit")  # fmt: skip


class HeadScores:
    """Per-head score lists over a layers x heads grid. A kind of score may apply to some layers only (no argmax in a
    linear-attention layer): `scored_layers` are those (default: every layer), each with every head's list, and the
    other layers' heads have none; statistics are NaN there, and `order` leaves them out."""

    def __init__(
        self, lists: dict[Head, np.ndarray], layers: int, heads: int, scored_layers: Sequence[int] | None = None
    ):
        outside = [head.name for head in lists if not (head.layer < layers and head.head < heads)]
        if outside:
            raise OcrHeadsError(f"head(s) {', '.join(outside[:5])} lie outside the {layers}x{heads} grid")
        self.layers, self.heads = layers, heads
        self.scored_layers = range(layers) if scored_layers is None else tuple(sorted(set(scored_layers)))
        unscored = [head.name for head in lists if head.layer not in self.scored_layers]
        if unscored:
            raise OcrHeadsError(f"head(s) {', '.join(unscored[:5])} have scores, but their layers are not scored")
        if len(lists) < len(self.scored_layers) * heads:  # counted first: a stray l100000_h100000 must not mean 10^10
            every = (Head(layer, h) for layer in self.scored_layers for h in range(heads))
            first = next(head for head in every if head not in lists)
            missing = len(self.scored_layers) * heads - len(lists)
            raise OcrHeadsError(f"no scores for {missing} head(s) of the {layers}x{heads} grid, e.g. {first.name}")
        self.lists = {head: np.asarray(lists[head], dtype=np.float64) for head in sorted(lists)}

    @property
    def grid(self) -> tuple[int, int]:
        return self.layers, self.heads

    @property
    def scored(self) -> np.ndarray:
        """(layers, heads) bool: the heads this kind of score applies to."""
        mask = np.zeros(self.grid, dtype=bool)
        mask[list(self.scored_layers)] = True
        return mask

    def order(self) -> list[Head]:
        """Every scored head, layer-major: the order ties are broken in."""
        return [Head(layer, h) for layer in self.scored_layers for h in range(self.heads)]

    def flat(self, values: np.ndarray) -> np.ndarray:
        """A (layers, heads) array's values at the scored heads, in `order`."""
        return np.asarray(values)[self.scored]

    def _per_head(self, statistic) -> np.ndarray:
        found = np.full(self.grid, np.nan)
        for head in self.order():
            values = self.lists[head]
            found[head.layer, head.head] = statistic(values) if len(values) else 0.0
        return found

    def means(self) -> np.ndarray:
        """(layers, heads) mean score; a head without entries scores 0, a head not scored is NaN."""
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
    def from_reference(
        cls, path: str | Path, grid: tuple[int, int] | None = None, scored_layers: Sequence[int] | None = None
    ) -> HeadScores:
        """Read a `{"l{L}_h{H}": [values...]}` file; the grid is the smallest that holds every head unless given, and
        every layer is scored unless `scored_layers` says which are."""
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
        return cls(lists, layers, heads, scored_layers)

    def to_reference(self, path: str | Path) -> None:
        lists = {head.name: [_plain(v) for v in values] for head, values in self.lists.items()}
        atomic_write_text(path, json.dumps(lists, indent=1) + "\n")


def _finite_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _plain(value: float) -> int | float:
    """Integral values as ints, so 0/1 lists round-trip to the reference files' own form."""
    return int(value) if float(value).is_integer() else float(value)
