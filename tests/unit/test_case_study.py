"""The per-character case study on a hand-made score table."""

import numpy as np

from ocrheads.analysis.case_study import character_heads, top_head_counts


def _table(entries):
    """entries: (sample, token, {flat head: value}) on a 2 x 2 grid; heads not given score 0."""
    columns = {"sample": [], "layer": [], "head": [], "value": []}
    for sample, values in entries:
        for flat in range(4):
            columns["sample"].append(sample)
            columns["layer"].append(flat // 2)
            columns["head"].append(flat % 2)
            columns["value"].append(values.get(flat, 0.0))
    return {name: np.array(values) for name, values in columns.items()}


def test_means_per_character_rank_heads_and_leave_out_unscored_characters():
    answers = {"s0": "a", "s1": "a", "s2": "b", "s3": "c"}
    table = _table([("s0", {3: 1.0, 1: 1.0}), ("s0", {3: 1.0}), ("s1", {1: 1.0}), ("s2", {0: 0.5, 2: 0.5})])
    found = character_heads(answers, table, (2, 2), top=2)
    assert list(found) == ["a", "b"]  # c was never scored
    # a: three entries; l0_h1 is 1 in two of them, l1_h1 in two -> tie at 2/3, broken layer-major
    assert found["a"] == {"entries": 3, "samples": 2, "top": [["l0_h1", 0.6667], ["l1_h1", 0.6667]]}
    assert found["b"]["top"] == [["l0_h0", 0.5], ["l1_h0", 0.5]]
    counts = top_head_counts(found)
    assert counts["top1"] == {"l0_h0": 1, "l0_h1": 1}
    assert counts["in_top"] == {"l0_h0": 1, "l0_h1": 1, "l1_h0": 1, "l1_h1": 1}
