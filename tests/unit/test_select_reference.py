"""The paper's published InternVL2-8B OCR scores, imported, give the paper's numbers (METHOD.md 6.3)."""

from pathlib import Path

import numpy as np
import pytest

from ocrheads.analysis.stats import activation, score_bins
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head, HeadScores
from ocrheads.select import HeadSelection, SelectionRule, ranking_scores, select, top_k

REFERENCE = Path(__file__).parents[1] / "data" / "InternVL2-8B_fg_2.json"
TOP_7 = ["l9_h0", "l7_h4", "l7_h6", "l11_h24", "l15_h26", "l12_h14", "l6_h2"]


@pytest.fixture(scope="module")
def internvl():
    return HeadScores.from_reference(REFERENCE)


def test_the_reference_file_reproduces_the_papers_counts_bins_and_top_heads(internvl):
    assert internvl.grid == (32, 32)
    assert len(internvl.lists[Head(0, 0)]) == 550 and len(internvl.lists[Head(9, 0)]) == 51
    for rule in ("paper", "code", "mean"):
        selection = select(internvl, SelectionRule(rule))
        assert len(selection.heads) == 44, rule
        assert [h.name for h in selection.heads[:7]] == TOP_7, rule
    code = SelectionRule("code")
    assert score_bins(ranking_scores(internvl, code)) == {
        "< 0": 0,
        "0": 895,
        "(0, 0.1]": 85,
        "(0.1, 0.3]": 32,
        "(0.3, 0.5]": 6,
        "> 0.5": 6,
    }
    assert [h.name for h in top_k(internvl, 10, code)] == [*TOP_7, "l9_h9", "l12_h10", "l18_h14"]
    assert np.isclose(internvl.means()[9, 0], 35 / 51)
    found = activation(internvl)
    assert found["pearson"] == pytest.approx(1.0) and found["spearman"] == pytest.approx(1.0)
    assert found["heads"][:3] == ["l9_h0", "l7_h4", "l7_h6"]


def test_reference_files_and_head_lists_round_trip(internvl, tmp_path):
    internvl.to_reference(tmp_path / "scores.json")
    assert (tmp_path / "scores.json").read_text().count('"l') == 1024
    again = HeadScores.from_reference(tmp_path / "scores.json")
    assert all(np.array_equal(again.lists[head], internvl.lists[head]) for head in internvl.order())
    selection = select(internvl, SelectionRule("code"), source="InternVL2-8B_fg_2.json")
    selection.to_json(tmp_path / "ocr_heads.json")
    loaded = HeadSelection.from_json(tmp_path / "ocr_heads.json")
    assert loaded.heads == selection.heads and loaded.rule == selection.rule
    assert loaded.by_layer()[7] == [4, 6, 11]


def test_the_code_rule_drops_always_on_heads_that_the_paper_rule_keeps():
    always = np.ones(20)
    sometimes = np.r_[np.ones(5), np.zeros(15)]
    rare = np.r_[np.full(1, 0.9), np.zeros(19)]
    scores = HeadScores({Head(0, 0): always, Head(0, 1): sometimes, Head(0, 2): rare}, 1, 3)
    names = {rule: [h.name for h in select(scores, SelectionRule(rule)).heads] for rule in ("paper", "code", "mean")}
    assert names == {"paper": ["l0_h0", "l0_h1"], "code": ["l0_h1"], "mean": ["l0_h0", "l0_h1"]}
    with pytest.raises(OcrHeadsError, match="k=4 heads asked for, but the model has 3"):
        top_k(scores, 4, SelectionRule())


def test_bad_score_files_name_the_problem(tmp_path):
    cases = {
        "not_json.json": ("{", "cannot read score file"),
        "bad_name.json": ('{"layer0head0": [1]}', "'layer0head0' is not a head name"),
        "nan.json": ('{"l0_h0": [NaN]}', "head l0_h0 must map to a list of finite numbers"),
        "hole.json": ('{"l0_h0": [1], "l1_h1": [0]}', r"no scores for 2 head\(s\) of the 2x2 grid, e.g. l0_h1"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(OcrHeadsError, match=message):
            HeadScores.from_reference(tmp_path / name)
    scores = HeadScores({Head(0, 0): np.ones(2)}, 1, 1)
    with pytest.raises(OcrHeadsError, match="scores 1x1 heads, but the model has 28x12"):
        scores.check_grid(28, 12, "ocr")
