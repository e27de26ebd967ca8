"""The findings' statistics on values small enough to work out by hand."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from ocrheads.analysis.stats import ABOVE_0_1, activation, correlation, jaccard, score_bins, similarity
from ocrheads.heads import Head, HeadScores


def test_score_bins_put_each_edge_in_the_bin_the_paper_closes_it_in():
    values = np.array([[0.0, 1e-12, 0.1, 0.1 + 1e-12], [0.3, 0.30001, 0.5, 0.5000001], [1.0, 2.5, -1e-12, 0.2]])
    found = score_bins(values)
    assert found == {"< 0": 1, "0": 1, "(0, 0.1]": 2, "(0.1, 0.3]": 3, "(0.3, 0.5]": 2, "> 0.5": 3}
    assert sum(found.values()) == values.size  # every head in one bin, negative and above-1 causal scores included
    assert score_bins([0.05]) == {"< 0": 0, "0": 0, "(0, 0.1]": 1, "(0.1, 0.3]": 0, "(0.3, 0.5]": 0, "> 0.5": 0}
    assert sum(found[label] for label in ABOVE_0_1) == 8  # the donut's "> 0.1": the heads past the rules' threshold


def test_jaccard_is_shared_over_either_and_zero_for_two_empty_sets():
    a, b, c = Head(0, 0), Head(0, 1), Head(2, 3)
    assert jaccard({a, b}, {b, c}) == pytest.approx(1 / 3)
    assert jaccard({a, b, c}, {a}) == pytest.approx(1 / 3)
    assert jaccard({a}, {a}) == 1.0 and jaccard({a}, {c}) == 0.0 and jaccard(set(), {a}) == 0.0
    assert jaccard(set(), set()) == 0.0


def test_similarity_counts_the_selections_the_top_k_and_ranks_every_score():
    h = [Head(0, i) for i in range(5)]
    scores_a = np.array([[0.9, 0.5, 0.4, 0.1, 0.0]])
    scores_b = np.array([[0.0, 0.6, 0.8, 0.2, 0.7]])  # ranks of a: 5 4 3 2 1; of b: 1 3 5 2 4
    ranked_b = [h[2], h[4], h[1], h[3], h[0]]
    found = similarity({h[0], h[1], h[2]}, {h[1], h[2], h[3], h[4]}, h, ranked_b, scores_a, scores_b, 4)
    d2 = (5 - 1) ** 2 + (4 - 3) ** 2 + (3 - 5) ** 2 + (2 - 2) ** 2 + (1 - 4) ** 2  # 30
    assert found == {
        "jaccard": pytest.approx(2 / 5),
        "selected_a": 3,
        "selected_b": 4,
        "shared": 2,
        "top_k": 4,
        "top_k_overlap": pytest.approx(3 / 4),  # {h0, h1, h2, h3} and {h2, h4, h1, h3}
        "spearman": pytest.approx(1 - 6 * d2 / (5 * (5**2 - 1))),  # -0.5
    }


def test_activation_orders_heads_by_frequency_and_correlates_it_with_the_mean():
    scores = HeadScores(
        {
            Head(0, 0): np.array([0.05, 0.05, 0.05, 0.05]),  # frequency 0, mean 0.05
            Head(0, 1): np.array([1.0, 0.0, 0.0, 0.0]),  # 0.25, 0.25
            Head(1, 0): np.array([0.2, 0.2, 0.1, 0.1]),  # 0.5 (entries at 0.1 are not above it), 0.15
            Head(1, 1): np.array([1.0, 0.0, 0.0, 0.0]),  # 0.25, 0.25: a tie keeps layer-major order
        },
        2,
        2,
    )
    found = activation(scores)
    assert found["heads"] == ["l1_h0", "l0_h1", "l1_h1", "l0_h0"]
    assert found["frequency"] == pytest.approx([0.5, 0.25, 0.25, 0.0])
    assert found["mean"] == pytest.approx([0.15, 0.25, 0.25, 0.05])
    frequency, mean = np.array([0.0, 0.25, 0.5, 0.25]), np.array([0.05, 0.25, 0.15, 0.25])
    fc, mc = frequency - frequency.mean(), mean - mean.mean()
    assert found["pearson"] == pytest.approx((fc @ mc) / math.sqrt((fc @ fc) * (mc @ mc)))
    assert found["spearman"] == pytest.approx(stats.pearsonr([1, 2.5, 4, 2.5], [1, 3.5, 2, 3.5]).statistic)
    assert activation(scores, threshold=0.15)["frequency"] == pytest.approx([0.5, 0.25, 0.25, 0.0])
    assert activation(scores, threshold=0.01)["heads"][0] == "l0_h0"  # every entry of l0_h0 is above 0.01


def test_a_correlation_with_a_constant_side_is_undefined_and_says_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(correlation(stats.spearmanr, np.ones(4), np.arange(4.0)))
        assert math.isnan(correlation(stats.pearsonr, np.arange(4.0), np.full(4, 0.3)))
    assert correlation(stats.pearsonr, np.arange(4.0), 2 * np.arange(4.0) + 1) == pytest.approx(1.0)
