"""Answer metrics: ANLS (with the normalisation choices of the common evaluators as flags), SQuAD exact match and
token F1, passkey accuracy, and a bootstrap confidence interval for any per-sample metric.

ANLS differences between evaluators (ANCHORS.md section 3): lmms-eval's DocVQA lowercases and collapses
whitespace but divides by the *raw* string lengths; its MP-DocVQA evaluator lowercases and strips without
collapsing, and scores an empty or "none" prediction 0; VLMEvalKit collapses whitespace and divides by the
normalised lengths. The defaults follow lmms-eval's DocVQA.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein


@dataclass(frozen=True)
class AnlsOptions:
    threshold: float = 0.5  # similarities below it count 0
    collapse_whitespace: bool = True  # "a  b" == "a b"; without it, only the ends are stripped
    raw_lengths: bool = True  # divide by the lengths of the strings before normalisation (lmms-eval DocVQA)
    none_is_zero: bool = False  # an empty or "none" prediction scores 0 (lmms-eval MP-DocVQA)


ANLS_PRESETS = {
    "lmms-eval-docvqa": AnlsOptions(),
    "lmms-eval-mpdocvqa": AnlsOptions(collapse_whitespace=False, raw_lengths=False, none_is_zero=True),
    "vlmevalkit": AnlsOptions(raw_lengths=False),
}


def _anls_normalise(text: str, options: AnlsOptions) -> str:
    text = text.lower()
    return " ".join(text.split()) if options.collapse_whitespace else text.strip()


def anls(prediction: str, answers: Sequence[str], options: AnlsOptions = AnlsOptions()) -> float:
    """Average Normalised Levenshtein Similarity of one prediction: the best over the gold answers."""
    predicted = _anls_normalise(prediction, options)
    if options.none_is_zero and predicted in ("", "none"):
        return 0.0

    def similarity(answer: str) -> float:
        gold = _anls_normalise(answer, options)
        length = max(len(answer), len(prediction)) if options.raw_lengths else max(len(gold), len(predicted))
        return 1.0 - Levenshtein.distance(gold, predicted) / max(length, 1)

    best = max(map(similarity, answers), default=0.0)
    return best if best >= options.threshold else 0.0


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def squad_normalise(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    predicted = squad_normalise(prediction)
    return float(any(predicted == squad_normalise(answer) for answer in answers))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD token F1, the best over the gold answers."""
    predicted = squad_normalise(prediction).split()
    best = 0.0
    for answer in answers:
        gold = squad_normalise(answer).split()
        if not predicted and not gold:  # both normalise to nothing: SQuAD counts that a match
            return 1.0
        common = sum((Counter(predicted) & Counter(gold)).values())
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def passkey_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """1 when a gold pass key appears in the prediction (the paper's `str(gold) in pred`); an empty gold key
    matches nothing (it is in every string)."""
    return float(any(answer and answer in prediction for answer in answers))


METRICS: dict[str, Callable[[str, Sequence[str]], float]] = {
    "anls": anls,
    "em": exact_match,
    "f1": token_f1,
    "passkey": passkey_accuracy,
}


@dataclass(frozen=True)
class Estimate:
    """A mean over samples with its bootstrap 95 % interval (NaN bounds below two samples)."""

    mean: float
    low: float
    high: float
    n: int


def estimate(values: Sequence[float], *, seed: int = 0, resamples: int = 2000) -> Estimate:
    """Mean and percentile-bootstrap 95 % confidence interval, reproducible from `seed`."""
    from scipy import stats  # half a second to import: not paid by `mask --help` and the other users of metrics

    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(values.mean())
    if len(values) < 2:
        return Estimate(mean, float("nan"), float("nan"), len(values))
    found = stats.bootstrap(
        (values,), np.mean, n_resamples=resamples, method="percentile", random_state=np.random.default_rng(seed)
    )
    return Estimate(mean, float(found.confidence_interval.low), float(found.confidence_interval.high), len(values))
