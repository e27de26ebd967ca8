"""How stable a run's head scores are: bootstrap intervals over samples, split-half reliability, and how the top-k
heads settle as samples are added. All of it from per-sample sums, so a replicate is one matrix product.

Entries are resampled by sample (an OCR sample contributes one entry per answer token; they stay together). A run
scored here knows each entry's sample; an imported score file does not, so there each entry is its own unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ocrheads.heads import Head, HeadScores
from ocrheads.select import SelectionRule, rule_keeps, rule_ranking, tie_groups

CONFIDENCE = 0.95


@dataclass(frozen=True)
class SampleSums:
    """Per-sample sums over one block of heads that share their entries: values, entries above the rule's
    activation level, zero entries, and the entry count."""

    heads: np.ndarray  # (h,) flat head indices, layer-major
    value: np.ndarray  # (samples, h)
    active: np.ndarray
    zero: np.ndarray
    count: np.ndarray  # (samples,)

    @classmethod
    def of(cls, heads: np.ndarray, values: np.ndarray, samples: np.ndarray, activation: float) -> SampleSums:
        """`values` (entries, h) with each entry's sample id in `samples` (entries,)."""
        order = np.argsort(samples, kind="stable")
        values, samples = values[order], samples[order]
        starts = np.flatnonzero(np.r_[True, samples[1:] != samples[:-1]]) if len(samples) else np.array([], int)

        def summed(array: np.ndarray) -> np.ndarray:
            return np.add.reduceat(array, starts, axis=0) if len(starts) else np.zeros((0, len(heads)))

        count = np.diff(np.r_[starts, len(samples)]).astype(np.float64)
        as_float = values.astype(np.float64)
        return cls(heads, summed(as_float), summed((as_float > activation) * 1.0), summed((as_float == 0) * 1.0), count)

    @property
    def samples(self) -> int:
        return len(self.count)

    def weighted(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, active fraction, zero fraction), each (replicates, h), for weights (replicates, samples)."""
        scale = 1.0 / np.maximum(weights @ self.count, 1.0)[:, None]  # entry counts are whole; none: all sums are 0
        return (weights @ self.value) * scale, (weights @ self.active) * scale, (weights @ self.zero) * scale


@dataclass(frozen=True)
class RunEntries:
    """A kind's scores as blocks of per-sample sums, covering every scored head of the grid once. Heads are flat
    indices into the grid (layer * heads + head); those a kind does not score are NaN in every statistic."""

    grid: tuple[int, int]
    blocks: tuple[SampleSums, ...]
    grouped: bool  # whether entries are grouped by sample (else each entry is its own unit)

    @classmethod
    def from_scores(cls, scores: HeadScores, activation: float, samples: np.ndarray | None = None) -> RunEntries:
        """Heads with equally long lists share entries (the normal case); the paper's files also hold heads whose
        lists are longer (entries lost part-way), and those are resampled as a block of their own."""
        lengths: dict[int, list[Head]] = {}
        for head in scores.order():
            lengths.setdefault(len(scores.lists[head]), []).append(head)
        blocks = []
        for length, heads in lengths.items():
            values = np.stack([scores.lists[head] for head in heads], axis=1)
            ids = samples if samples is not None and len(samples) == length else np.arange(length)
            flat = np.array([head.layer * scores.heads + head.head for head in heads])
            blocks.append(SampleSums.of(flat, values, ids, activation))
        return cls(scores.grid, tuple(blocks), samples is not None)

    @property
    def heads(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def columns(self) -> np.ndarray:
        """The scored heads' flat indices, layer-major."""
        return np.sort(np.concatenate([block.heads for block in self.blocks]))

    def statistics(self, weights_of) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, active fraction, zero fraction), each (replicates, heads), with each block's per-sample weights
        from `weights_of(samples)`."""
        parts = [block.weighted(weights_of(block.samples)) for block in self.blocks]
        replicates = parts[0][0].shape[0]
        out = [np.full((replicates, self.heads), np.nan) for _ in range(3)]
        for block, found in zip(self.blocks, parts, strict=True):
            for target, values in zip(out, found, strict=True):
                target[:, block.heads] = values
        return out[0], out[1], out[2]

    def ranking(self, rule: SelectionRule, weights_of) -> np.ndarray:
        """(replicates, heads) ranking scores under `rule`."""
        mean, _, zero = self.statistics(weights_of)
        return rule_ranking(rule, mean, zero)


def _bootstrap_weights(rng: np.random.Generator, replicates: int):
    def weights(samples: int) -> np.ndarray:
        if not samples:
            return np.zeros((replicates, 0))
        return rng.multinomial(samples, np.full(samples, 1.0 / samples), size=replicates).astype(float)

    return weights


@dataclass(frozen=True)
class Bootstrap:
    """Replicates, each (replicates, heads), of a kind's mean scores, activation frequencies (entries above the
    rule's activation level), ranking scores and selections; samples drawn with replacement, seeded."""

    mean: np.ndarray
    frequency: np.ndarray
    ranking: np.ndarray
    keeps: np.ndarray  # bool
    columns: np.ndarray  # the scored heads (flat indices): the others are NaN, and never kept

    @classmethod
    def of(cls, entries: RunEntries, rule: SelectionRule, replicates: int = 1000, seed: int = 0) -> Bootstrap:
        rng = np.random.default_rng(seed)
        mean, frequency, zero = entries.statistics(_bootstrap_weights(rng, replicates))
        ranking = rule_ranking(rule, mean, zero)
        return cls(mean, frequency, ranking, rule_keeps(rule, ranking, frequency), entries.columns)

    def interval(self, values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-head percentile interval of the ranking score (or of `values`, replicates x heads)."""
        values = self.ranking if values is None else values
        tail = 100 * (1 - CONFIDENCE) / 2
        return np.percentile(values, tail, axis=0), np.percentile(values, 100 - tail, axis=0)

    def robust(self, selected: np.ndarray, rule: SelectionRule) -> int:
        """How many of the selected heads (flat bool) the rule still keeps with each statistic at its lower end."""
        ranking_low, _ = self.interval()
        frequency_low, _ = self.interval(self.frequency)
        return int((selected & rule_keeps(rule, ranking_low, frequency_low)).sum())


def top_k_mask(ranking: np.ndarray, k: int) -> np.ndarray:
    """(rows, heads) bool: each row's k best heads, ties (within TIE) broken layer-major (as `select.ranked`)."""
    order = np.argsort(-tie_groups(ranking), axis=-1, kind="stable")[..., :k]
    mask = np.zeros(ranking.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


def row_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson along the last axis of two arrays (NaN where a row is constant)."""
    a, b = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / np.sqrt((a**2).sum(-1) * (b**2).sum(-1))


def _row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman per row of two (rows, heads) arrays: Pearson of their ranks, values within TIE sharing one."""
    return row_pearson(stats.rankdata(tie_groups(a), axis=1), stats.rankdata(tie_groups(b), axis=1))


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The CONFIDENCE percentile interval of the finite values (NaN bounds when there are none)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = 100 * (1 - CONFIDENCE) / 2
    return float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail))


def _summary(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    low, high = percentile_interval(values)
    return {"mean": float(finite.mean()) if len(finite) else float("nan"), "low": low, "high": high}


def split_half(entries: RunEntries, rule: SelectionRule, k: int, repeats: int = 50, seed: int = 0) -> dict:
    """Top-k overlap and Spearman of the ranking scores between two disjoint random halves of the samples."""
    rng = np.random.default_rng(seed)
    k = min(k, len(entries.columns))  # a grid with fewer scored heads than k compares all of them
    halves: dict[int, np.ndarray] = {}

    def half(samples: int) -> np.ndarray:
        if samples not in halves:
            first = np.argsort(rng.random((repeats, samples)), axis=1) < samples // 2
            halves[samples] = first.astype(float)
        return halves[samples]

    first = entries.ranking(rule, half)[:, entries.columns]
    second = entries.ranking(rule, lambda samples: 1.0 - half(samples))[:, entries.columns]
    overlap = (top_k_mask(first, k) & top_k_mask(second, k)).sum(1) / k
    return {
        "k": k,
        "repeats": repeats,
        "top_k_overlap": _summary(overlap),
        "spearman": _summary(_row_spearman(first, second)),
    }


def sample_sizes(samples: int) -> list[int]:
    """10, 20, 40, ... below the run's sample count, then all of them."""
    sizes, size = [], 10
    while size < samples:
        sizes.append(size)
        size *= 2
    return [*sizes, samples]


def settling_curve(entries: RunEntries, rule: SelectionRule, k: int, repeats: int = 30, seed: int = 0) -> dict:
    """Top-k overlap with the full run's top-k when only n samples are scored (n drawn without replacement)."""
    k = min(k, len(entries.columns))
    full = entries.ranking(rule, lambda samples: np.ones((1, samples)))[:, entries.columns]
    target = top_k_mask(full, k)
    most = max(entries.blocks, key=lambda block: len(block.heads)).samples  # the block most heads share
    rng = np.random.default_rng(seed)
    points = []
    for size in sample_sizes(most):

        def drawn(samples: int, size: int = size) -> np.ndarray:
            take = min(size, samples)
            return (np.argsort(rng.random((repeats, samples)), axis=1) < take).astype(float)

        overlap = (top_k_mask(entries.ranking(rule, drawn)[:, entries.columns], k) & target).sum(1) / k
        points.append({"samples": size, **_summary(overlap)})
    return {"k": k, "repeats": repeats, "points": points}
