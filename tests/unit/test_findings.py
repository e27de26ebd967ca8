"""The findings table: each verdict rule on hand-made runs that should and should not show the finding, and the
published InternVL2-8B file (OCR only)."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from ocrheads.analysis.runs import analyze_run
from ocrheads.heads import Head, HeadScores
from ocrheads.select import SelectionRule

GRID = (2, 4)
REFERENCE = Path(__file__).parents[1] / "data" / "InternVL2-8B_fg_2.json"
RULE = SelectionRule("mean")


def _lists(means: list[float], entries: int = 80, seed: int = 0, binary: bool = True) -> dict[Head, np.ndarray]:
    """Per head: 0/1 entries with the given rate (or entries of 0 and 1.5x the mean, for non-binary lists)."""
    rng = np.random.default_rng(seed)
    lists = {}
    for index, mean in enumerate(means):
        hits = rng.random(entries) < (mean if binary else mean / 1.5)
        lists[Head(index // GRID[1], index % GRID[1])] = hits * (1.0 if binary else 1.5)
    return lists


def _write(run: Path, kind: str, lists: dict[Head, np.ndarray]) -> None:
    (run / kind).mkdir(parents=True, exist_ok=True)
    HeadScores(lists, *GRID).to_reference(run / kind / "scores.json")


def _findings(run: Path) -> dict[str, dict]:
    return {f["name"]: f for f in analyze_run(run, RULE, top_k=2, replicates=300)["findings"]}


def test_less_sparse_and_distinct_are_shown_for_many_separate_ocr_heads(tmp_path):
    _write(tmp_path, "ocr", _lists([0.6, 0.5, 0.6, 0.5, 0.0, 0.0, 0.0, 0.0]))
    _write(tmp_path, "retrieval", _lists([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.0], seed=1))
    found = _findings(tmp_path)
    assert found["less sparse"]["verdict"] == "shown" and found["less sparse"]["value"].startswith("4 vs 1")
    assert found["less sparse"]["interval"][0] > 0
    assert found["distinct"]["verdict"] == "shown" and found["distinct"]["value"] == "0.000"
    assert found["masking"]["verdict"] == found["sink"]["verdict"] == "not measured"


def test_shared_heads_and_fewer_ocr_heads_are_not_shown(tmp_path):
    _write(tmp_path, "ocr", _lists([0.6, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    _write(tmp_path, "retrieval", _lists([0.6, 0.5, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0], seed=1))
    found = _findings(tmp_path)
    assert found["less sparse"]["verdict"] == "not shown"
    assert found["distinct"]["verdict"] == "not shown"
    assert float(found["distinct"]["value"]) == pytest.approx(2 / 3, abs=1e-3)
    assert "same heads serve" in found["distinct"]["note"]


def test_static_activation_is_flagged_as_by_construction_for_binary_entries(tmp_path):
    _write(tmp_path, "ocr", _lists([0.6, 0.5, 0.3, 0.2, 0.1, 0.05, 0.0, 0.0]))
    found = _findings(tmp_path)["statically activated"]
    assert found["verdict"] == "shown" and found["value"] == "1.000"
    assert "by construction" in found["note"]


def test_static_activation_not_shown_where_frequency_and_score_part(tmp_path):
    """Rare large entries (high mean, low frequency) against frequent small ones (low mean, high frequency)."""
    rng = np.random.default_rng(3)
    lists = {}
    for index in range(8):
        rare = index % 2  # odd heads: mean about 0.9, active in 10 % of entries; even: about 0.11, in 90 %
        values = (rng.random(80) < 0.1) * 9.0 if rare else (rng.random(80) < 0.9) * 0.12
        lists[Head(index // GRID[1], index % GRID[1])] = values
    _write(tmp_path, "ocr", lists)
    found = _findings(tmp_path)["statically activated"]
    assert found["verdict"] == "not shown" and found["note"] == ""
    assert float(found["value"]) < 0


def _experiment(run: Path, kind: str, arms: dict[str, tuple[str, int, float, float, float]]) -> None:
    """A results table: condition -> (group, heads, mean, low, high), on two datasets."""
    folder = run / kind
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"intervention": {"kind": kind}}))
    rows = [{"condition": name, "group": group, "heads": heads, "seed": None, "dataset": dataset, "prompt": "direct",
             "metric": "em", "mean": mean, "low": low, "high": high, "n": 80, "skipped": 0}
            for name, (group, heads, mean, low, high) in arms.items() for dataset in ("docvqa", "passkey")]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), folder / "results.parquet")


@pytest.mark.parametrize("ocr_arm, verdict", [((0.2, 0.1, 0.3), "shown"), ((0.5, 0.4, 0.7), "not shown")])
def test_masking_verdict_compares_the_largest_ocr_arm_with_pooled_random_heads(tmp_path, ocr_arm, verdict):
    _write(tmp_path, "ocr", _lists([0.6, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    _experiment(tmp_path, "mask", {
        "baseline": ("baseline", 0, 0.9, 0.85, 0.95),
        "ocr-top1": ("ocr", 1, 0.1, 0.0, 0.2),  # a smaller k: not the one compared
        "ocr-top2": ("ocr", 2, *ocr_arm),
        "random-top2-pooled": ("random", 2, 0.75, 0.65, 0.85),
    })  # fmt: skip
    found = _findings(tmp_path)["masking"]
    assert found["verdict"] == verdict
    assert found["value"].startswith("ocr-top2 vs random-top2-pooled: docvqa direct em")


@pytest.mark.parametrize("sink_arm, verdict", [((0.95, 0.91, 0.99), "shown"), ((0.92, 0.88, 0.96), "not shown")])
def test_sink_verdict_needs_an_interval_above_the_baseline(tmp_path, sink_arm, verdict):
    _write(tmp_path, "ocr", _lists([0.6, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    _experiment(tmp_path, "sink", {"baseline": ("baseline", 0, 0.86, 0.82, 0.9), "ocr-top2": ("ocr", 2, *sink_arm)})
    found = _findings(tmp_path)["sink"]
    assert found["verdict"] == verdict and found["note"] == ""


def test_a_sink_row_at_the_metrics_ceiling_says_no_lift_could_show(tmp_path):
    _write(tmp_path, "ocr", _lists([0.6, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    _experiment(
        tmp_path, "sink", {"baseline": ("baseline", 0, 0.99, 0.96, 1.0), "ocr-top2": ("ocr", 2, 0.99, 0.96, 1.0)}
    )
    found = _findings(tmp_path)["sink"]
    assert found["verdict"] == "not shown" and "ceiling" in found["note"]


def test_the_published_internvl2_file_measures_only_what_needs_ocr_scores(tmp_path):
    scores = HeadScores.from_reference(REFERENCE)
    (tmp_path / "ocr").mkdir()
    scores.to_reference(tmp_path / "ocr" / "scores.json")
    found = {f["name"]: f for f in analyze_run(tmp_path, SelectionRule("code"), replicates=200)["findings"]}
    for name in ("less sparse", "distinct", "masking", "sink"):
        assert found[name]["verdict"] == "not measured", name
    static = found["statically activated"]
    assert static["value"] == "1.000" and static["verdict"] == "shown" and "by construction" in static["note"]
