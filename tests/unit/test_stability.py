"""Bootstrap intervals, split-half reliability and the settling curve equal a direct computation, sample by
sample, on a small hand-made table (entries grouped by sample, as OCR entries are). The direct side applies each
rule's definition in exact fractions, so it shares nothing with `ocrheads.select`."""

from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from ocrheads.analysis.stability import (
    Bootstrap,
    RunEntries,
    percentile_interval,
    sample_sizes,
    settling_curve,
    split_half,
)
from ocrheads.heads import Head, HeadScores
from ocrheads.select import SelectionRule

GRID = (2, 3)
RULES = [SelectionRule("paper"), SelectionRule("code"), SelectionRule("mean", threshold=0.3)]


@pytest.fixture(scope="module")
def table():
    """(entries, heads) values in {0, 0.2, 0.5, 1} and each entry's sample: 14 samples of 1 to 3 entries. Head 0
    never scores; head 3 has entries at exactly the activation level; heads 4 and 5 are (almost) never zero, so the
    code rule drops them; head 4 has negative entries, as causal scores do."""
    rng = np.random.default_rng(7)
    samples = np.repeat(np.arange(14), rng.integers(1, 4, 14))
    values = rng.choice([0.0, 0.2, 0.5, 1.0], size=(len(samples), 6), p=[0.5, 0.2, 0.2, 0.1])
    values[:, 0] *= 0
    values[:, 3] = np.where(values[:, 3] == 0.2, 0.1, values[:, 3])  # at the activation level: not above it
    values[:, 4] = rng.choice([-0.2, 0.5, 1.0], size=len(samples))
    values[:, 5] = np.where(values[:, 5] == 0, 0.2, values[:, 5])
    values[0, 5] = 0.0  # zero in about 4 % of entries: resampling moves it around the code rule's 10 %
    return values, samples


def _scores(values: np.ndarray) -> HeadScores:
    lists = {Head(i // GRID[1], i % GRID[1]): values[:, i] for i in range(values.shape[1])}
    return HeadScores(lists, *GRID)


def _direct(values: np.ndarray, rule: SelectionRule) -> tuple[np.ndarray, ...]:
    """Per head (columns of `values`): ranking score, whether the rule keeps it, fraction of entries above the
    rule's activation level, mean; from METHOD.md section 3's definitions, in exact fractions."""
    threshold, activation = Fraction(str(rule.threshold)), Fraction(str(rule.activation))
    ranking, keeps, active, means = [], [], [], []
    for column in values.T:
        entries = [Fraction(str(v)) for v in column]  # -0.2, 0, 0.1, 0.2, 0.5 and 1 are exact as decimals
        mean = sum(entries) / len(entries)
        above = Fraction(sum(e > activation for e in entries), len(entries))
        zeros = Fraction(sum(e == 0 for e in entries), len(entries))
        score = mean if rule.name != "code" or zeros > Fraction(str(rule.zero_fraction)) else Fraction(0)
        if rule.name == "paper":
            keep = score > threshold and above >= Fraction(str(rule.min_frequency))
        else:
            keep = score >= threshold
        ranking.append(float(score)), keeps.append(keep), active.append(float(above)), means.append(float(mean))
    return np.array(ranking), np.array(keeps), np.array(active), np.array(means)


def _top(ranking: np.ndarray, k: int) -> set[int]:
    """The k best heads' flat indices; equal scores keep layer-major order."""
    return set(sorted(range(len(ranking)), key=lambda head: (-ranking[head], head))[:k])


def _resampled(values, samples, counts) -> np.ndarray:
    """The entries of a bootstrap replicate: each sample's entries repeated as often as it was drawn."""
    return np.concatenate([np.repeat(values[samples == s], n, axis=0) for s, n in enumerate(counts) if n])


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_bootstrap_replicates_and_intervals_equal_a_direct_resampling(table, rule):
    values, samples = table
    entries = RunEntries.from_scores(_scores(values), rule.activation, samples)
    found = Bootstrap.of(entries, rule, replicates=200, seed=3)
    counts = np.random.default_rng(3).multinomial(14, np.full(14, 1 / 14), size=200)
    direct = [_direct(_resampled(values, samples, c), rule) for c in counts]
    ranking, keeps, active, means = (np.array(column) for column in zip(*direct, strict=True))
    np.testing.assert_allclose(found.ranking, ranking, atol=1e-12)
    np.testing.assert_allclose(found.mean, means, atol=1e-12)
    np.testing.assert_allclose(found.frequency, active, atol=1e-12)
    assert np.array_equal(found.keeps, keeps)
    low, high = found.interval()
    np.testing.assert_allclose(low, np.percentile(ranking, 2.5, axis=0))
    np.testing.assert_allclose(high, np.percentile(ranking, 97.5, axis=0))
    chosen = _direct(values, rule)[1]
    ranking_low, active_low = np.percentile(ranking, 2.5, axis=0), np.percentile(active, 2.5, axis=0)
    if rule.name == "paper":
        passes = (active_low >= rule.min_frequency) & (ranking_low > rule.threshold)
    else:
        passes = ranking_low >= rule.threshold
    assert found.robust(chosen, rule) == int((chosen & passes).sum())


@pytest.mark.parametrize("count", [14, 13])  # an odd count: the first half is the smaller
def test_split_halves_equal_scoring_each_half_alone(table, count):
    values, samples = table
    values, samples = values[samples < count], samples[samples < count]
    rule = SelectionRule("mean")
    found = split_half(RunEntries.from_scores(_scores(values), rule.activation, samples), rule, k=2, repeats=20, seed=5)
    halves = np.argsort(np.random.default_rng(5).random((20, count)), axis=1) < count // 2
    overlaps, rhos = [], []
    for first in halves:
        a = _direct(values[np.isin(samples, np.flatnonzero(first))], rule)[0]
        b = _direct(values[np.isin(samples, np.flatnonzero(~first))], rule)[0]
        overlaps.append(len(_top(a, 2) & _top(b, 2)) / 2)
        rhos.append(stats.spearmanr(a, b).statistic)
    assert (found["k"], found["repeats"]) == (2, 20)
    assert found["top_k_overlap"] == pytest.approx(
        {"mean": np.mean(overlaps), "low": np.percentile(overlaps, 2.5), "high": np.percentile(overlaps, 97.5)}
    )
    finite = np.array(rhos)[np.isfinite(rhos)]
    assert found["spearman"] == pytest.approx(
        {"mean": finite.mean(), "low": np.percentile(finite, 2.5), "high": np.percentile(finite, 97.5)}
    )


def test_the_settling_curve_reaches_the_full_top_k_with_all_samples(table):
    values, samples = table
    rule = SelectionRule("mean")
    curve = settling_curve(RunEntries.from_scores(_scores(values), rule.activation, samples), rule, k=2, seed=1)
    assert [p["samples"] for p in curve["points"]] == [10, 14]
    assert curve["points"][-1]["mean"] == 1.0 == curve["points"][-1]["low"]
    rng = np.random.default_rng(1)
    drawn = np.argsort(rng.random((30, 14)), axis=1) < 10
    full = _top(_direct(values, rule)[0], 2)
    overlaps = [len(_top(_direct(values[np.isin(samples, np.flatnonzero(d))], rule)[0], 2) & full) / 2 for d in drawn]
    assert curve["points"][0]["mean"] == pytest.approx(np.mean(overlaps))


def test_lists_of_unequal_length_are_resampled_as_their_own_block():
    """The paper's InternVL2-8B file: one head kept 550 entries where the others kept 51."""
    lists = {Head(0, h): np.array([1.0, 0.0, 1.0]) for h in range(3)} | {Head(1, h): np.ones(3) for h in range(3)}
    lists[Head(0, 0)] = np.zeros(11)
    lists[Head(0, 1)] = np.array([0.6])
    entries = RunEntries.from_scores(HeadScores(lists, *GRID), 0.1)
    assert sorted(block.samples for block in entries.blocks) == [1, 3, 11]
    found = Bootstrap.of(entries, SelectionRule("mean"), replicates=50)
    assert np.all(found.ranking[:, 0] == 0) and np.all(found.ranking[:, 1] == 0.6) and np.all(found.ranking[:, 3:] == 1)


def test_defaults_are_the_documented_replicates_repeats_and_seed(table):
    values, samples = table
    rule = SelectionRule("mean")
    entries = RunEntries.from_scores(_scores(values), rule.activation, samples)
    found = Bootstrap.of(entries, rule)
    assert np.array_equal(found.ranking, Bootstrap.of(entries, rule, replicates=1000, seed=0).ranking)
    assert split_half(entries, rule, k=2) == split_half(entries, rule, k=2, repeats=50, seed=0)
    assert settling_curve(entries, rule, k=2) == settling_curve(entries, rule, k=2, repeats=30, seed=0)


def test_sample_sizes_double_from_ten_and_end_at_the_run():
    assert sample_sizes(3) == [3] and sample_sizes(10) == [10] and sample_sizes(20) == [10, 20]
    assert sample_sizes(45) == [10, 20, 40, 45] and sample_sizes(80) == [10, 20, 40, 80]


def test_percentile_intervals_take_the_middle_95_percent_of_finite_values():
    assert percentile_interval(np.arange(101.0)) == pytest.approx((2.5, 97.5))
    assert percentile_interval(np.r_[np.arange(101.0), np.nan, np.inf]) == pytest.approx((2.5, 97.5))
    low, high = percentile_interval(np.array([np.nan]))
    assert np.isnan(low) and np.isnan(high)


def test_entries_are_grouped_by_sample_only_where_a_list_has_one_per_given_sample():
    rng = np.random.default_rng(2)
    samples = np.repeat(np.arange(120), 3)  # 360 entries: past Python's small-int cache
    lists = {Head(0, h): rng.random(360) for h in range(3)}
    lists[Head(1, 0)], lists[Head(1, 1)], lists[Head(1, 2)] = rng.random(500), rng.random(200), rng.random(200)
    grouped = RunEntries.from_scores(HeadScores(lists, *GRID), 0.1, samples)
    assert grouped.grouped and not RunEntries.from_scores(HeadScores(lists, *GRID), 0.1).grouped
    assert sorted(block.samples for block in grouped.blocks) == [120, 200, 500]  # other lengths: each entry a unit


def test_a_kind_with_no_entries_resamples_to_zeros():
    entries = RunEntries.from_scores(HeadScores({Head(0, h): np.array([]) for h in range(2)}, 1, 2), 0.1)
    found = Bootstrap.of(entries, SelectionRule("mean"), replicates=5)
    assert found.ranking.shape == (5, 2) and not found.ranking.any() and not found.keeps.any()
