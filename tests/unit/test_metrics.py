"""Metrics on fixed strings with values worked out by hand, including each ANLS normalisation choice."""

import math
import warnings
from dataclasses import FrozenInstanceError

import pytest

from ocrheads.eval.metrics import (
    ANLS_PRESETS,
    AnlsOptions,
    Estimate,
    anls,
    estimate,
    exact_match,
    passkey_accuracy,
    token_f1,
)


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("Hello   World", ["hello world"], 1.0),  # case and inner whitespace do not count
        ("helo", ["hello"], 0.8),  # one edit in five characters
        ("abcd", ["abxy"], 0.5),  # exactly at the threshold: kept
        ("abcde", ["abxyz"], 0.0),  # 0.4 is below the threshold
        ("hallo", ["hello", "hallo"], 1.0),  # the best gold answer counts
        ("", [""], 1.0),
    ],
)
def test_anls_default_is_lmms_eval_docvqa(prediction, answers, expected):
    assert anls(prediction, answers) == pytest.approx(expected)


def test_anls_normalisation_flags():
    # normalised "a b" vs "a c": one edit. lmms-eval DocVQA divides by the raw length 4, VLMEvalKit by 3;
    # lmms-eval MP-DocVQA does not collapse "a  b", so two edits over 4.
    assert anls("a  b", ["a c"], ANLS_PRESETS["lmms-eval-docvqa"]) == pytest.approx(0.75)
    assert anls("a  b", ["a c"], ANLS_PRESETS["vlmevalkit"]) == pytest.approx(2 / 3)
    assert anls("a  b", ["a c"], ANLS_PRESETS["lmms-eval-mpdocvqa"]) == pytest.approx(0.5)
    assert anls("None", ["none"]) == 1.0
    assert anls("None", ["none"], ANLS_PRESETS["lmms-eval-mpdocvqa"]) == 0.0
    assert anls(" ", ["x"], ANLS_PRESETS["lmms-eval-mpdocvqa"]) == 0.0


def test_squad_exact_match_and_token_f1():
    assert exact_match("The Cat!", ["cat"]) == 1.0
    assert exact_match("black cat", ["cat"]) == 0.0
    assert token_f1("the big cat", ["a cat"]) == pytest.approx(2 / 3)  # tokens [big, cat] vs [cat]
    assert token_f1("cat cat dog", ["cat dog", "dog"]) == pytest.approx(0.8)  # p 2/3, r 1
    assert token_f1("the", ["a"]) == 1.0  # both normalise to nothing
    assert token_f1("", ["cat"]) == 0.0


def test_passkey_accuracy_looks_for_the_key_anywhere():
    assert passkey_accuracy("The pass key is 12345.", ["12345"]) == 1.0
    assert passkey_accuracy("1234", ["12345"]) == 0.0


@pytest.mark.parametrize(
    "answers",
    [["invoice", "receipt", "bill"], ["receipt", "invoice", "bill"], ["receipt", "bill", "invoice"]],
    ids=["best first", "best in the middle", "best last"],
)
def test_every_metric_takes_the_best_gold_answer_wherever_it_stands(answers):
    """Against "invoce": invoice is one deletion in 7 (6/7), receipt and bill are far (below the threshold). EM and F1
    of "the invoice" match "invoice" after SQuAD normalisation, nothing else."""
    assert anls("invoce", answers) == pytest.approx(6 / 7)
    assert exact_match("the invoice", answers) == 1.0
    assert token_f1("the invoice total", answers) == pytest.approx(2 / 3)  # p 1/2, r 1


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("abcdefghij", "abcdefghij", 1.0),
        ("abcdefghxx", "abcdefghij", 0.8),  # 2 substitutions in 10
        ("abcdexxxxx", "abcdefghij", 0.5),  # 5 in 10: exactly the threshold, kept
        ("abcdxxxxxx", "abcdefghij", 0.0),  # 6 in 10: 0.4, dropped
        ("abcdefghi", "abcdefghij", 0.9),  # one deletion, divided by the longer (10)
        ("abcdefghijk", "abcdefghij", 10 / 11),  # one insertion, divided by the longer (11)
        ("", "abc", 0.0),  # three deletions in 3
        ("abc", "", 0.0),
    ],
)
def test_anls_at_and_around_the_threshold(prediction, answer, expected):
    assert anls(prediction, [answer]) == pytest.approx(expected)


def test_anls_threshold_is_an_option():
    assert anls("abcdxxxxxx", ["abcdefghij"], AnlsOptions(threshold=0.4)) == pytest.approx(0.4)
    assert anls("abcdexxxxx", ["abcdefghij"], AnlsOptions(threshold=0.51)) == 0.0


def test_empty_strings_in_em_and_f1():
    assert exact_match("", [""]) == 1.0 and exact_match("", ["a"]) == 1.0  # "a" is an article: it normalises to ""
    assert exact_match("", ["cat"]) == 0.0 and exact_match("cat", [""]) == 0.0
    assert token_f1("", ["", "cat"]) == 1.0  # the empty gold answer is matched exactly
    assert token_f1("cat", [""]) == 0.0
    assert anls("anything", []) == 0.0 and exact_match("x", []) == 0.0 and token_f1("x", []) == 0.0


def test_bootstrap_interval_is_reproducible_and_brackets_the_mean():
    values = [0, 1, 1, 0, 1, 1, 1, 0, 1, 1]
    first, again = estimate(values, seed=3), estimate(values, seed=3)
    assert first == again and first.n == 10 and first.mean == 0.7
    assert 0.3 <= first.low < 0.7 < first.high <= 1.0
    assert estimate([1, 1, 1]).low == estimate([1, 1, 1]).high == 1.0
    assert math.isnan(estimate([0.5]).low) and estimate([]).n == 0


def test_token_f1_where_neither_precision_nor_recall_is_one():
    assert token_f1("the cat sat", ["a cat ran"]) == pytest.approx(0.5)  # [cat, sat] vs [cat, ran]: p = r = 1/2
    assert token_f1("cat sat on mat", ["cat on"]) == pytest.approx(2 / 3)  # p 2/4, r 2/2
    assert token_f1("cat", ["cat sat on mat"]) == pytest.approx(0.4)  # p 1, r 1/4
    assert token_f1("cat", ["", "cat"]) == 1.0  # an empty gold answer before the match does not end the search


def test_anls_of_one_character_strings_and_the_mp_docvqa_lengths():
    assert anls("a", ["b"]) == 0.0 and anls("a", ["a"]) == 1.0  # one edit over one character
    # lmms-eval MP-DocVQA divides by the normalised lengths: " AB " -> "ab" against "ac", 1 edit over 2 (not 4)
    assert anls(" AB ", ["ac"], ANLS_PRESETS["lmms-eval-mpdocvqa"]) == pytest.approx(0.5)
    assert anls(" AB ", ["ac"], ANLS_PRESETS["lmms-eval-docvqa"]) == pytest.approx(0.75)  # raw lengths: 1 over 4


def test_presets_and_estimates_cannot_be_changed_by_a_caller():
    with pytest.raises(FrozenInstanceError):
        ANLS_PRESETS["vlmevalkit"].threshold = 0.1
    with pytest.raises(FrozenInstanceError):
        estimate([1.0, 2.0]).mean = 0.0


def test_estimate_edge_cases_and_its_documented_defaults():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty list is answered, not averaged (numpy would warn)
        empty = estimate([])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.low)
    one = estimate([0.25])
    assert (one.mean, one.n) == (0.25, 1) and math.isnan(one.low) and math.isnan(one.high)
    two = estimate([0.0, 1.0])
    assert two.mean == 0.5 and 0.0 <= two.low < two.high <= 1.0  # two samples have an interval
    assert estimate([0.5, 0.5, 0.5]) == Estimate(0.5, 0.5, 0.5, 3)  # constant values: a zero-width interval
    values = [(i * 7 % 20) ** 2 / 400 for i in range(20)]  # 20 distinct values: the interval moves with the draws
    assert estimate(values) == estimate(values, seed=0, resamples=2000) != estimate(values, seed=0, resamples=2001)
    assert estimate(values) != estimate(values, seed=1)
