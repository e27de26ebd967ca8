"""The three selection rules at their boundaries, ranking ties, top-k limits and the head-list file, each worked out
by hand (20 entries a head, so one entry is 5 % of them)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from ocrheads import __version__
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head, HeadScores
from ocrheads.select import HeadSelection, SelectionRule, ranking_scores, select, selected, tie_groups, top_k


def _entries(*pairs: tuple[int, float], fill: float = 0.0) -> np.ndarray:
    """20 entries: `count` of each `value`, the rest `fill`."""
    values = [value for count, value in pairs for _ in range(count)]
    return np.array(values + [fill] * (20 - len(values)))


BOUNDARIES = {  # name: (entries, mean, fraction of entries > 0.1, fraction of zero entries)
    "often": (_entries((2, 1.0), fill=0.05), 0.145, 0.10, 0.0),  # active in exactly the paper's 10 %
    "rarely": (_entries((1, 1.0), fill=0.1), 0.145, 0.05, 0.0),  # entries at 0.1 are not active
    "at": (_entries((2, 1.0)), 0.1, 0.1, 0.9),  # the mean is the threshold
    "tie_above": (_entries((2, 1.0), (1, 1e-8)), 0.1 + 5e-10, 0.1, 0.85),  # within 1e-9 of the threshold: equal to it
    "above": (_entries((2, 1.0), (1, 1e-7)), 0.1 + 5e-9, 0.1, 0.85),
    "tie_below": (_entries((1, 1.0), (1, 1.0 - 1e-8)), 0.1 - 5e-10, 0.1, 0.9),
    "below": (_entries((1, 1.0), (1, 1.0 - 1e-7)), 0.1 - 5e-9, 0.1, 0.9),
    "zeros_at": (_entries((2, 0.0), fill=0.5), 0.45, 0.9, 0.1),  # zero in exactly the code's 10 %
    "zeros_above": (_entries((3, 0.0), fill=0.5), 0.425, 0.85, 0.15),
}


@pytest.fixture(scope="module")
def boundaries() -> tuple[HeadScores, dict[str, Head]]:
    heads = {name: Head(0, h) for h, name in enumerate(BOUNDARIES)}
    scores = HeadScores({heads[name]: entries for name, (entries, *_) in BOUNDARIES.items()}, 1, len(heads))
    return scores, heads


def test_the_fixture_has_the_statistics_its_names_claim(boundaries):
    scores, heads = boundaries
    for name, (_, mean, active, zero) in BOUNDARIES.items():
        head = heads[name]
        assert scores.means()[0, head.head] == pytest.approx(mean, abs=1e-12), name
        assert scores.frequency_above(0.1)[0, head.head] == pytest.approx(active), name
        assert scores.zero_fraction()[0, head.head] == pytest.approx(zero), name


def test_each_rule_keeps_the_heads_its_definition_says_at_every_boundary(boundaries):
    scores, heads = boundaries
    kept = {rule: {h.name for h in select(scores, SelectionRule(rule)).heads} for rule in ("paper", "code", "mean")}
    expected = {  # paper: mean > 0.1 and active in >= 10 %; code: zero in > 10 % and mean >= 0.1; mean: mean >= 0.1
        "paper": {"often", "above", "zeros_at", "zeros_above"},
        "code": {"at", "tie_above", "above", "tie_below", "zeros_above"},
        "mean": {"often", "rarely", "at", "tie_above", "above", "tie_below", "zeros_at", "zeros_above"},
    }
    assert kept == {rule: {heads[name].name for name in names} for rule, names in expected.items()}
    code = dict(zip(BOUNDARIES, ranking_scores(scores, SelectionRule("code"))[0], strict=True))
    filtered = {"often", "rarely", "zeros_at"}  # zero in at most 10 % of entries: the code ranks them at 0
    assert {name: value for name, value in code.items() if value == 0} == dict.fromkeys(filtered, 0.0)
    assert selected(scores, SelectionRule("paper")).dtype == bool  # a mask: callers index and negate it


def test_a_value_exactly_one_tie_from_a_limit_is_equal_to_it():
    edge = {Head(0, 0): np.array([0.1 - 1e-9]), Head(0, 1): np.array([0.1 + 1e-9]), Head(0, 2): np.array([1.0, 0, 0])}
    scores = HeadScores(edge, 1, 3)
    assert selected(scores, SelectionRule("mean")).tolist() == [[True, True, True]]
    assert selected(scores, SelectionRule("paper")).tolist() == [[False, False, True]]
    one_in_three = SelectionRule("paper", min_frequency=0.33333333433333334)  # 1/3 + 1e-9, to the last bit
    assert selected(scores, one_in_three).tolist() == [[False, False, True]]


def test_a_rule_uses_the_limits_it_is_given():
    scores = HeadScores(
        {
            Head(0, 0): _entries((6, 0.6), fill=0.2),  # mean 0.32, 30 % above 0.5: paper keeps
            Head(0, 1): _entries((4, 0.6), fill=0.3),  # mean 0.36, 20 % above 0.5: paper drops
            Head(0, 2): _entries((11, 0.0), fill=0.8),  # mean 0.36, zero in 55 %: code keeps
            Head(0, 3): _entries((10, 0.0), fill=0.8),  # mean 0.4, zero in 50 %: code drops
        },
        1,
        4,
    )
    paper = SelectionRule("paper", threshold=0.3, activation=0.5, min_frequency=0.25)
    code = SelectionRule("code", threshold=0.3, zero_fraction=0.5)
    assert [h.name for h in select(scores, paper).heads] == ["l0_h3", "l0_h2", "l0_h0"]
    assert [h.name for h in select(scores, code).heads] == ["l0_h2"]
    assert select(scores, code).scores == pytest.approx((0.36,))


def test_rankings_are_best_first_and_ties_keep_layer_major_order():
    means = {Head(1, 0): 0.5, Head(0, 2): 0.5, Head(0, 0): 0.2, Head(1, 2): 0.7, Head(0, 1): 0.0, Head(1, 1): 0.5}
    scores = HeadScores({head: np.full(20, mean) for head, mean in means.items()}, 2, 3)
    order = ["l1_h2", "l0_h2", "l1_h0", "l1_h1", "l0_h0", "l0_h1"]
    assert [h.name for h in top_k(scores, 6, SelectionRule("mean"))] == order
    assert [h.name for h in top_k(scores, 1, SelectionRule("mean"))] == order[:1]
    for k in (0, -1, 7):
        with pytest.raises(OcrHeadsError, match=rf"k={k} heads asked for, but the model has 6 \(2x3\)"):
            top_k(scores, k, SelectionRule("mean"))
    selection = select(scores, SelectionRule("mean"))
    assert [h.name for h in selection.heads] == order[:5]
    assert selection.scores == pytest.approx((0.7, 0.5, 0.5, 0.5, 0.2))


def test_means_within_a_billionth_are_tied_so_summation_order_cannot_reorder_heads():
    same = {Head(0, 0): np.array([0.2, 0.3, 0.1]), Head(0, 1): np.array([0.3, 0.1, 0.2])}  # in another order
    scores = HeadScores(same, 1, 2)
    assert scores.means()[0, 0] < scores.means()[0, 1]
    assert [h.name for h in top_k(scores, 2, SelectionRule("mean"))] == ["l0_h0", "l0_h1"]
    values = np.array([[0.3, 0.1, 0.1 + 1e-12, 0.2, 0.1 - 5e-10, 0.2 + 2e-9], [1.0, 0.0, 0.0, 2.0, 1.0, 0.5]])
    assert tie_groups(values).tolist() == [[3, 0, 0, 1, 0, 2], [2, 0, 0, 3, 2, 1]]
    assert tie_groups(np.array([0.0, 1e-9, 2.5e-9])).tolist() == [0, 0, 1]  # exactly TIE apart is still a tie


def test_an_unknown_rule_is_refused_by_name():
    with pytest.raises(OcrHeadsError, match="unknown selection rule 'max'; use one of paper, code, mean"):
        SelectionRule("max")


def test_a_head_list_file_holds_exactly_the_selection_and_reads_back(tmp_path):
    rule = SelectionRule("code", threshold=0.2)
    selection = HeadSelection(
        heads=(Head(3, 1), Head(0, 5), Head(3, 0)),
        scores=(0.123456789, 1 / 3, None),
        rule=rule,
        grid=(4, 8),
        source="runs/a/scores.parquet",
    )
    selection.to_json(tmp_path / "plain.json")
    assert json.loads((tmp_path / "plain.json").read_text()) == {
        "heads": ["l3_h1", "l0_h5", "l3_h0"],
        "by_layer": {"0": [5], "3": [0, 1]},
        "scores": {"l3_h1": 0.123457, "l0_h5": 0.333333, "l3_h0": None},
        "rule": {"name": "code", "threshold": 0.2, "activation": 0.1, "min_frequency": 0.1, "zero_fraction": 0.1},
        "grid": [4, 8],
        "source": "runs/a/scores.parquet",
        "ocrheads_version": __version__,
    }
    assert (tmp_path / "plain.json").read_text().startswith('{\n  "heads": [\n    "l3_h1",')  # two-space indents
    assert (tmp_path / "plain.json").read_text().endswith("}\n")
    with pytest.raises(ValueError, match="zip"):
        replace(selection, scores=(0.5,)).to_json(tmp_path / "short.json")  # a score per head, or nothing written
    assert not (tmp_path / "short.json").exists()
    loaded = HeadSelection.from_json(tmp_path / "plain.json")
    assert loaded == replace(selection, scores=(0.123457, 0.333333, None))
    robust = replace(selection, robust={"heads": 2, "replicates": 100, "seed": 0})
    robust.to_json(tmp_path / "robust.json")
    assert json.loads((tmp_path / "robust.json").read_text())["robust"] == robust.robust
    assert HeadSelection.from_json(tmp_path / "robust.json").robust == robust.robust


def test_head_list_scores_read_as_floats_whatever_number_the_file_holds(tmp_path):
    record = {"heads": ["l0_h0", "l0_h1"], "scores": {"l0_h0": 1, "l0_h1": None}, "rule": {"name": "mean"},
              "grid": [1, 2], "source": ""}  # fmt: skip
    (tmp_path / "heads.json").write_text(json.dumps(record))
    loaded = HeadSelection.from_json(tmp_path / "heads.json")
    assert loaded.scores == (1.0, None) and type(loaded.scores[0]) is float
    assert loaded.rule == SelectionRule("mean") and loaded.robust is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (None, "No such file"),
        ("{", "Expecting property name"),
        ('{"scores": {}}', "'heads'"),
        ('{"heads": [], "scores": {}, "rule": {"name": "mean", "k": 3}, "grid": [1, 1], "source": ""}', "'k'"),
    ],
)
def test_a_file_that_is_not_a_head_list_is_named_with_the_reason(tmp_path, text, why):
    path = tmp_path / "heads.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(OcrHeadsError, match=rf"{path} is not a head list written by `ocrheads select` \(.*{why}"):
        HeadSelection.from_json(path)
