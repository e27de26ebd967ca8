"""Which heads count as OCR (or retrieval) heads: three selection rules, and ranking for top-k.

METHOD.md section 3: the paper states "mean > 0.1 and active (> 0.1) in at least 10% of entries" (`paper`);
its code keeps a head only when it is zero in more than 10% of entries and its mean is >= 0.1 (`code`, whose
filtered mean also ranks heads for masking and sink edits); `mean` is the mean alone. Ties in a ranking are
broken layer-major, as the paper's code does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ocrheads import __version__
from ocrheads.atomic import atomic_write_text
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head, HeadScores

RULES = ("paper", "code", "mean")


@dataclass(frozen=True)
class SelectionRule:
    name: Literal["paper", "code", "mean"] = "paper"
    threshold: float = 0.1  # on the head's (filtered) mean
    activation: float = 0.1  # `paper`: an entry is active above this
    min_frequency: float = 0.1  # `paper`: active in at least this fraction of entries
    zero_fraction: float = 0.1  # `code`: kept only when zero in more than this fraction of entries

    def __post_init__(self):
        if self.name not in RULES:
            raise OcrHeadsError(f"unknown selection rule {self.name!r}; use one of {', '.join(RULES)}")


def rule_ranking(rule: SelectionRule, mean: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """The value heads are ranked by, from their mean and zero fraction (arrays of any one shape): the mean, or
    under `code` the paper code's filtered mean."""
    if rule.name == "code":
        return np.where(zero > rule.zero_fraction, mean, 0.0)
    return mean


TIE = 1e-9  # a mean this close to a threshold or to another mean is equal to it: sums in another order differ in
# their last bits, and must not flip a selection or an order


def tie_groups(values: np.ndarray) -> np.ndarray:
    """Integer ranks along the last axis (0 = smallest) of finite values, one rank for each run of values within TIE of
    their neighbour: what heads are ordered and rank-correlated by. NaN (a head a score does not apply to) ranks
    below every value."""
    values = np.where(np.isnan(values), -np.inf, values)
    order = np.argsort(values, axis=-1, kind="stable")
    with np.errstate(invalid="ignore"):  # -inf - -inf: NaN, not a step, so unscored heads share the lowest rank
        steps = np.diff(np.take_along_axis(values, order, axis=-1), axis=-1) > TIE
    ascending = np.concatenate([np.zeros_like(steps[..., :1], dtype=np.int64), np.cumsum(steps, axis=-1)], axis=-1)
    groups = np.empty_like(ascending)
    np.put_along_axis(groups, order, ascending, axis=-1)
    return groups


def rule_keeps(rule: SelectionRule, ranking: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Which heads the rule keeps, from their ranking value and the fraction of their entries above
    `rule.activation` (arrays of any one shape)."""
    if rule.name == "paper":
        return (active >= rule.min_frequency - TIE) & (ranking > rule.threshold + TIE)
    return ranking >= rule.threshold - TIE


def ranking_scores(scores: HeadScores, rule: SelectionRule) -> np.ndarray:
    """(layers, heads) value heads are ranked by."""
    return rule_ranking(rule, scores.means(), scores.zero_fraction())


def selected(scores: HeadScores, rule: SelectionRule) -> np.ndarray:
    """(layers, heads) boolean: which heads the rule keeps."""
    return rule_keeps(rule, ranking_scores(scores, rule), scores.frequency_above(rule.activation))


def ranked(scores: HeadScores, rule: SelectionRule) -> list[Head]:
    """Every scored head, best first; equal scores (within TIE) keep layer-major order."""
    order = np.argsort(-tie_groups(scores.flat(ranking_scores(scores, rule))), kind="stable")
    heads = scores.order()
    return [heads[i] for i in order]


def top_k(scores: HeadScores, k: int, rule: SelectionRule) -> list[Head]:
    total = len(scores.order())
    if not 0 < k <= total:
        where = f"{scores.layers}x{scores.heads}"
        if total < scores.layers * scores.heads:
            where = f"{len(scores.scored_layers)} scored layers of {scores.heads}"
        raise OcrHeadsError(f"k={k} heads asked for, but the model has {total} ({where})")
    return ranked(scores, rule)[:k]


@dataclass(frozen=True)
class HeadSelection:
    """A selected head set, best first, with the rule and source that made it."""

    heads: tuple[Head, ...]
    scores: tuple[float | None, ...]  # each head's ranking score (None: an imported list without scores)
    rule: SelectionRule
    grid: tuple[int, int]
    source: str
    robust: dict | None = None  # how many selected heads pass the rule at their bootstrap interval's lower end

    def by_layer(self) -> dict[int, list[int]]:
        layers: dict[int, list[int]] = {}
        for head in sorted(self.heads):
            layers.setdefault(head.layer, []).append(head.head)
        return layers

    def to_json(self, path: str | Path) -> None:
        record = {
            "heads": [head.name for head in self.heads],
            "by_layer": {str(layer): heads for layer, heads in self.by_layer().items()},
            "scores": {head.name: _rounded(score) for head, score in zip(self.heads, self.scores, strict=True)},
            "rule": asdict(self.rule),
            "grid": list(self.grid),
            "source": self.source,
            "ocrheads_version": __version__,
        } | ({"robust": self.robust} if self.robust else {})
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> HeadSelection:
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
            heads = tuple(Head.parse(name) for name in record["heads"])
            return cls(
                heads,
                tuple(_score(record["scores"][head.name]) for head in heads),
                SelectionRule(**record["rule"]),
                tuple(record["grid"]),
                record["source"],
                record.get("robust"),
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise OcrHeadsError(f"{path} is not a head list written by `ocrheads select` ({err})") from None


def _rounded(score: float | None) -> float | None:
    return None if score is None else round(score, 6)


def _score(value) -> float | None:
    """A head's score in a head list; imported lists of some formats rank heads without scores."""
    return None if value is None else float(value)


def select(scores: HeadScores, rule: SelectionRule, source: str = "") -> HeadSelection:
    values = ranking_scores(scores, rule)
    keep = selected(scores, rule)
    heads = tuple(head for head in ranked(scores, rule) if keep[head.layer, head.head])
    return HeadSelection(heads, tuple(float(values[h.layer, h.head]) for h in heads), rule, scores.grid, source)
