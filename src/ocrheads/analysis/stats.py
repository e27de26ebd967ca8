"""The paper's three findings as numbers: sparsity, OCR vs retrieval similarity, static activation."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from ocrheads.heads import Head, HeadScores

BIN_LABELS = ("< 0", "0", "(0, 0.1]", "(0.1, 0.3]", "(0.3, 0.5]", "> 0.5")  # causal scores pass 1
ABOVE_0_1 = BIN_LABELS[3:]  # the bins past 0.1, the selection rules' threshold


def score_bins(values: np.ndarray) -> dict[str, int]:
    """Counts of heads per score bin, as in the paper's donut charts (a bin of exactly zero), with one bin before
    them for negative scores: a causal score is negative where ablating the head helps the answer."""
    values = np.asarray(values, dtype=np.float64).ravel()
    edges = [values < 0, values == 0, (values > 0) & (values <= 0.1), (values > 0.1) & (values <= 0.3)]
    edges += [(values > 0.3) & (values <= 0.5), values > 0.5]
    return {label: int(mask.sum()) for label, mask in zip(BIN_LABELS, edges, strict=True)}


def jaccard(a: set[Head], b: set[Head]) -> float:
    """|A & B| / |A | B|, and 0 when both are empty (the paper's definition)."""
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def similarity(
    selected_a: set[Head], selected_b: set[Head], ranked_a: list[Head], ranked_b: list[Head], scores_a, scores_b, k: int
) -> dict[str, float]:
    """How alike two head sets are: Jaccard of the selections, top-k overlap, Spearman of the scores of every head
    both kinds score. Top-k compares at most every head both rank."""
    k = min(k, len(ranked_a), len(ranked_b))
    overlap = len(set(ranked_a[:k]) & set(ranked_b[:k]))
    rho = correlation(stats.spearmanr, *both_scored(scores_a, scores_b))
    return {
        "jaccard": jaccard(selected_a, selected_b),
        "selected_a": len(selected_a),
        "selected_b": len(selected_b),
        "shared": len(selected_a & selected_b),
        "top_k": k,
        "top_k_overlap": overlap / k,
        "spearman": float(rho),
    }


def activation(scores: HeadScores, threshold: float = 0.1) -> dict:
    """Activation frequency (fraction of entries > threshold) against mean score, per head.

    With 0/1 entries the two are equal by construction, so a correlation of 1 there says nothing on its own.
    """
    frequency, means = scores.flat(scores.frequency_above(threshold)), scores.flat(scores.means())
    order = np.argsort(-frequency, kind="stable")
    heads = scores.order()
    return {
        "pearson": correlation(stats.pearsonr, frequency, means),
        "spearman": correlation(stats.spearmanr, frequency, means),
        "heads": [heads[i].name for i in order],
        "frequency": frequency[order].tolist(),
        "mean": means[order].tolist(),
    }


def both_scored(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two (layers, heads) score arrays at the heads both score (NaN where a kind does not apply), flat."""
    kept = ~(np.isnan(a) | np.isnan(b))
    return np.asarray(a)[kept], np.asarray(b)[kept]


def correlation(test, a: np.ndarray, b: np.ndarray) -> float:
    """The test's statistic: NaN where either side is constant (undefined there), without scipy's warning about it,
    which would only clutter a run's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(test(a, b).statistic)
