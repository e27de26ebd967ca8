"""The paper's findings, stated by a run: each with its measure, the paper's value, this run's value and interval,
and a verdict by a fixed rule ("shown", "not shown", "not measured").

The rules (also in the README):
- less sparse: more OCR heads than retrieval heads are selected, and the bootstrap interval of the difference lies
  above zero;
- distinct: the Jaccard of the two selected sets is below DISTINCT_MAX_JACCARD at the interval's upper end;
- statically activated: Pearson of activation frequency and mean over all OCR heads is at least STATIC_MIN_PEARSON
  at the interval's lower end (with 0/1 entries it is 1 by construction, and the row says so);
- masking: masking the top-k OCR heads (largest k run) scores below k random heads (pooled seeds) with the
  intervals apart, on every dataset and prompt (first metric of each);
- sink: redistributing sink mass in the top OCR heads scores above the baseline with the intervals apart on at
  least one dataset and prompt, and below it on none (where the baseline's interval reaches the metric's ceiling
  everywhere, the row says no lift could show).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ocrheads.analysis.stability import Bootstrap, percentile_interval, row_pearson
from ocrheads.run import RunDir
from ocrheads.scoring.kinds import COPYING, READING

DISTINCT_MAX_JACCARD = 0.25
STATIC_MIN_PEARSON = 0.9
METRIC_CEILING = 1.0  # EM, ANLS, F1 and accuracy all lie in [0, 1]
PAPER = {  # ../shared/METHOD.md section 6 (published InternVL2-8B numbers unless said)
    "less sparse": "InternVL2-8B: 44 OCR vs 34 retrieval heads (Qwen2-VL-2B 55 vs 40, -7B 68 vs 24)",
    "distinct": "top-7 OCR and top-7 retrieval heads disjoint for all three models (Jaccard 0)",
    "statically activated": "Pearson 1.0 (InternVL2-8B; its entries are 0/1)",
    "masking": "masking top-k OCR heads lowers DocVQA / MP-DocVQA more than random heads (table not in METHOD.md)",
    "sink": "redistributing sink mass in OCR heads raises DocVQA F1 by up to 0.9 points",
}


@dataclass(frozen=True)
class Finding:
    name: str
    measure: str
    paper: str
    value: str
    interval: tuple[float, float] | None
    verdict: str
    rule: str
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self) | {"interval": list(self.interval) if self.interval else None}


def _not_measured(name: str, measure: str, rule: str, why: str) -> Finding:
    return Finding(name, measure, PAPER[name], "-", None, "not measured", rule, why)


def less_sparse(counts: dict[str, int], boots: dict[str, Bootstrap]) -> Finding:
    measure, rule = "heads selected: OCR vs retrieval", "shown when the interval of OCR - retrieval lies above 0"
    if not {READING, COPYING} <= set(boots):
        return _not_measured("less sparse", measure, rule, "needs both OCR and retrieval scores")
    low, high = percentile_interval(boots[READING].keeps.sum(1) - boots[COPYING].keeps.sum(1).astype(float))
    verdict = "shown" if low > 0 else "not shown"
    value = f"{counts[READING]} vs {counts[COPYING]} (difference {counts[READING] - counts[COPYING]})"
    return Finding("less sparse", measure, PAPER["less sparse"], value, (low, high), verdict, rule)


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    union = (a | b).sum(-1)
    return np.where(union > 0, (a & b).sum(-1) / np.maximum(union, 1), 0.0)


def distinct(selected: dict[str, np.ndarray], boots: dict[str, Bootstrap], top_overlap: str) -> Finding:
    measure = "Jaccard of the selected OCR and retrieval head sets"
    rule = f"shown when the interval's upper end is below {DISTINCT_MAX_JACCARD}"
    if not {READING, COPYING} <= set(boots):
        return _not_measured("distinct", measure, rule, "needs both OCR and retrieval scores")
    value = float(_jaccard(selected[READING], selected[COPYING]))
    low, high = percentile_interval(_jaccard(boots[READING].keeps, boots[COPYING].keeps))
    verdict = "shown" if high < DISTINCT_MAX_JACCARD else "not shown"
    note = top_overlap
    if verdict == "not shown":
        note += (
            "; in this model the same heads serve reading text in images and copying text, so the finding does "
            "not hold for it: the measure is the paper's, the overlap is the model's"
        )
    return Finding("distinct", measure, PAPER["distinct"], f"{value:.3f}", (low, high), verdict, rule, note)


def statically_activated(frequency: np.ndarray, mean: np.ndarray, boot: Bootstrap | None, binary: bool) -> Finding:
    """From each scored OCR head's activation frequency and mean (flat, `HeadScores.order`) and their replicates."""
    measure = "Pearson of activation frequency (entries > 0.1) and mean score over all OCR heads"
    rule = f"shown when the interval's lower end is at least {STATIC_MIN_PEARSON}"
    if boot is None:
        return _not_measured("statically activated", measure, rule, "needs OCR scores")
    value = float(row_pearson(frequency, mean))
    low, high = percentile_interval(row_pearson(boot.frequency[:, boot.columns], boot.mean[:, boot.columns]))
    verdict = "shown" if low >= STATIC_MIN_PEARSON else "not shown"
    note = (
        "entries are 0/1, so the frequency of entries above 0.1 equals the mean by construction (the paper's "
        "Pearson 1.0): this row says nothing about the model"
        if binary
        else ""
    )
    return Finding("statically activated", measure, PAPER["statically activated"], f"{value:.3f}", (low, high),
                   verdict, rule, note)  # fmt: skip


def _columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """(dataset, prompt, first metric) of each dataset and prompt."""
    first: dict[tuple[str, str], str] = {}
    for row in rows:
        first.setdefault((row["dataset"], row["prompt"]), row["metric"])
    return [(dataset, prompt, metric) for (dataset, prompt), metric in first.items()]


def _cell(rows: list[dict], condition: str, column: tuple[str, str, str]) -> dict | None:
    return next((r for r in rows if r["condition"] == condition and (r["dataset"], r["prompt"], r["metric"]) == column),
                None)  # fmt: skip


def _describe(cells: list[tuple[tuple, dict, dict]], names: tuple[str, str]) -> str:
    parts = [f"{d} {p} {m}: {a['mean']:.3f} [{a['low']:.3f}, {a['high']:.3f}] vs {b['mean']:.3f} "
             f"[{b['low']:.3f}, {b['high']:.3f}]" for (d, p, m), a, b in cells]  # fmt: skip
    return f"{names[0]} vs {names[1]}: " + "; ".join(parts)


def masking(rows: list[dict] | None) -> Finding:
    measure = "score with the top-k OCR heads masked vs k random heads (largest k)"
    rule = "shown when the OCR arm's interval lies below the random arm's on every dataset and prompt"
    ocr = sorted({r["heads"] for r in rows or [] if r["group"] == READING})
    if not ocr:
        return _not_measured("masking", measure, rule, "no masking run with OCR heads")
    k = ocr[-1]
    names = (f"ocr-top{k}", f"random-top{k}-pooled")
    cells = [(c, _cell(rows, names[0], c), _cell(rows, names[1], c)) for c in _columns(rows)]
    cells = [cell for cell in cells if cell[1] and cell[2]]
    if not cells:
        return _not_measured("masking", measure, rule, f"no random arm of {k} heads")
    verdict = "shown" if all(a["high"] < b["low"] for _, a, b in cells) else "not shown"
    return Finding("masking", measure, PAPER["masking"], _describe(cells, names), None, verdict, rule)


def sink(rows: list[dict] | None) -> Finding:
    measure = "score with sink mass redistributed in the top OCR heads vs the baseline"
    rule = "shown when the OCR arm's interval lies above the baseline's somewhere and below it nowhere"
    arms = sorted({(r["heads"], r["condition"]) for r in rows or [] if r["group"] == READING})
    if not arms:
        return _not_measured("sink", measure, rule, "no sink run with OCR heads")
    names = (arms[-1][1], "baseline")
    cells = [(c, _cell(rows, names[0], c), _cell(rows, names[1], c)) for c in _columns(rows)]
    cells = [cell for cell in cells if cell[1] and cell[2]]
    above = any(a["low"] > b["high"] for _, a, b in cells)
    below = any(a["high"] < b["low"] for _, a, b in cells)
    verdict = "shown" if above and not below else "not shown"
    note = ""
    if verdict == "not shown" and all(b["high"] >= METRIC_CEILING for _, _, b in cells):
        note = (
            f"the baseline's interval reaches the metric's ceiling ({METRIC_CEILING:g}) on every dataset and "
            "prompt, so no lift could lie above it: the task is too easy for this model to show the finding"
        )
    return Finding("sink", measure, PAPER["sink"], _describe(cells, names), None, verdict, rule, note)


def experiment_rows(run: RunDir) -> dict[str, list[dict]]:
    """Results rows of the run's masking and sink experiments, by intervention kind (the last run of each)."""
    return {experiment.config()["intervention"]["kind"]: experiment.results() for experiment in run.experiments()}
