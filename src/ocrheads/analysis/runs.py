"""Selection and analysis of a run directory's score files (`<run>/ocr/scores.json`, `<run>/retrieval/...`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml
from scipy import stats

from ocrheads.analysis import figures, findings
from ocrheads.analysis.case_study import character_heads, top_head_counts
from ocrheads.analysis.stability import CONFIDENCE, Bootstrap, RunEntries, settling_curve, split_half
from ocrheads.analysis.stats import activation, correlation, score_bins, similarity
from ocrheads.atomic import atomic_write_text
from ocrheads.data.manifest import read_manifest
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head, HeadScores
from ocrheads.select import HeadSelection, SelectionRule, ranked, ranking_scores, select, selected, top_k

KINDS = ("ocr", "retrieval", "causal")


def run_scores(run: str | Path) -> dict[str, HeadScores]:
    """The score lists present in a run directory; none at all is an error."""
    run = Path(run)
    found = {
        kind: HeadScores.from_reference(run / kind / "scores.json")
        for kind in KINDS
        if (run / kind / "scores.json").is_file()
    }
    if not found:
        raise OcrHeadsError(
            f"{run} holds no scores; run `ocrheads score ocr|retrieval --out {run}` or `ocrheads scores import` first"
        )
    return found


def select_run(run: str | Path, rule: SelectionRule, replicates: int = 1000, seed: int = 0) -> dict[str, HeadSelection]:
    """Each kind's selection, recording how many of its heads the rule keeps at their bootstrap lower ends."""
    run = Path(run)
    selections = {}
    for kind, scores in run_scores(run).items():
        boot = Bootstrap.of(RunEntries.from_run(run / kind, scores, rule.activation), rule, replicates, seed)
        robust = {"heads": boot.robust(selected(scores, rule).ravel(), rule), "replicates": replicates, "seed": seed,
                  "confidence": CONFIDENCE}  # fmt: skip
        selections[kind] = replace(select(scores, rule, source=str(run / kind / "scores.json")), robust=robust)
        selections[kind].to_json(run / f"{kind}_heads.json")
    return selections


def scores_for_model(run: str | Path, grid: tuple[int, int]) -> dict[str, HeadScores]:
    """The run's score lists, each checked to be for a model of `grid`."""
    scores = run_scores(run)
    for kind, kind_scores in scores.items():
        kind_scores.check_grid(*grid, what=f"{Path(run) / kind}")
    return scores


def top_heads(run: str | Path, kind: str, k: int, grid: tuple[int, int]) -> list[Head]:
    """The k best heads of a run by the rule of its last selection, for a model of `grid` (checked).

    Selected or not: top-k for masking and overlays ranks every head, as the paper's code does.
    """
    scores = scores_for_model(run, grid)
    if kind not in scores:
        raise OcrHeadsError(f"{run} holds no {kind} scores; run `ocrheads score {kind} --out {run}` first")
    return top_k(scores[kind], k, last_rule(run))


def last_rule(run: str | Path) -> SelectionRule:
    """The rule the run's head lists were selected with (OCR's first), else the paper's."""
    for kind in KINDS:
        selection = Path(run) / f"{kind}_heads.json"
        if selection.is_file():
            return HeadSelection.from_json(selection).rule
    return SelectionRule()


def analyze_run(run: str | Path, rule: SelectionRule, top_k: int = 10, replicates: int = 1000, seed: int = 0) -> dict:
    """Sparsity and static activation per kind; OCR vs retrieval similarity when both are there; bootstrap
    intervals, split-half reliability and the settling curve per kind; the paper's findings with verdicts; the
    per-character case study when the OCR run scored the `chars` task. Writes analysis.json, each kind's
    score_intervals.json, and figures/."""
    run = Path(run)
    scores = run_scores(run)
    found: dict = {"rule": rule.__dict__}
    selections = {kind: select(kind_scores, rule) for kind, kind_scores in scores.items()}
    values = {kind: ranking_scores(kind_scores, rule) for kind, kind_scores in scores.items()}
    orders = {kind: ranked(kind_scores, rule) for kind, kind_scores in scores.items()}
    kept = {kind: selected(kind_scores, rule).ravel() for kind, kind_scores in scores.items()}
    entries = {kind: RunEntries.from_run(run / kind, s, rule.activation) for kind, s in scores.items()}
    boots = {kind: Bootstrap.of(entries[kind], rule, replicates, seed) for kind in scores}
    for kind, kind_scores in scores.items():
        ranking = (values[kind], orders[kind], kept[kind])
        found[kind] = _kind_summary(run / kind, kind_scores, ranking, rule, top_k, entries[kind], boots[kind], seed)
    if "ocr" in scores and "retrieval" in scores:
        ocr, retrieval = scores["ocr"], scores["retrieval"]
        if ocr.grid != retrieval.grid:
            raise OcrHeadsError(f"{run}: OCR scores are {ocr.grid} heads but retrieval scores {retrieval.grid}")
        found["similarity"] = similarity(
            set(selections["ocr"].heads),
            set(selections["retrieval"].heads),
            orders["ocr"],
            orders["retrieval"],
            values["ocr"],
            values["retrieval"],
            top_k,
        )
    if "causal" in scores:
        found["causal_relation"] = {
            kind: _relation(values["causal"], values[kind], orders["causal"], orders[kind], top_k)
            for kind in ("ocr", "retrieval")
            if kind in scores and scores[kind].grid == scores["causal"].grid
        }
    found["findings"] = [finding.to_dict() for finding in _findings(run, scores, orders, kept, boots, rule)]
    case_study = _case_study(run, scores["ocr"].grid) if "ocr" in scores else None
    if case_study:
        found["case_study"] = case_study
    atomic_write_text(run / "analysis.json", json.dumps(found, indent=1) + "\n")
    _draw(run, values, found)
    return found


def _relation(causal: np.ndarray, other: np.ndarray, causal_order, other_order, k: int) -> dict:
    """How a kind's scores relate to the causal ones: Spearman over heads, and how many of its top k are top-k
    causal heads."""
    shared = len(set(causal_order[:k]) & set(other_order[:k]))
    return {"spearman": correlation(stats.spearmanr, causal.ravel(), other.ravel()), "top_k": k, "top_k_shared": shared}


def _kind_summary(
    folder: Path,
    scores: HeadScores,
    ranking: tuple[np.ndarray, list[Head], np.ndarray],
    rule: SelectionRule,
    top_k: int,
    entries: RunEntries,
    boot: Bootstrap,
    seed: int,
) -> dict:
    """One kind's numbers, from its (ranking scores, heads best first, flat selection mask) under `rule`; every
    head's score and bootstrap interval also go to score_intervals.json."""
    values, order, kept = ranking
    low, high = boot.interval()

    def row(head: Head) -> list:
        index = head.layer * scores.heads + head.head
        return [head.name, round(float(values[head.layer, head.head]), 4), round(float(low[index]), 4),
                round(float(high[index]), 4)]  # fmt: skip

    intervals = {name: {"score": score, "low": lo, "high": hi} for name, score, lo, hi in map(row, scores.order())}
    atomic_write_text(folder / "score_intervals.json", json.dumps(intervals, indent=1) + "\n")
    return {
        "heads": scores.layers * scores.heads,
        "selected": int(kept.sum()),
        "robust": boot.robust(kept, rule),
        "bins": score_bins(values),
        "top": [row(head) for head in order[:top_k]],
        "activation": activation(scores),
        "stability": {
            "bootstrap": {"replicates": len(boot.ranking), "seed": seed, "unit": _unit(entries)},
            "split_half": split_half(entries, rule, top_k, seed=seed),
            "settling": settling_curve(entries, rule, top_k, seed=seed),
        },
    }


def _unit(entries: RunEntries) -> str:
    """What the bootstrap draws: samples, or entries where the score file does not say which sample each is."""
    return "sample" if entries.grouped else "entry (the score file does not say which sample an entry is from)"


def _findings(run: Path, scores, orders, kept, boots, rule: SelectionRule) -> list[findings.Finding]:
    counts = {kind: int(mask.sum()) for kind, mask in kept.items()}
    top_overlap = ""
    if "ocr" in scores and "retrieval" in scores:
        shared = len(set(orders["ocr"][:7]) & set(orders["retrieval"][:7]))
        top_overlap = f"top-7 sets share {shared} of 7 heads"
    experiments = findings.experiment_rows(run)
    ocr = scores.get("ocr")
    static = findings.statically_activated(
        ocr.frequency_above(rule.activation) if ocr else np.zeros(0),
        ocr.means() if ocr else np.zeros(0),
        boots.get("ocr"),
        bool(ocr) and all(np.isin(values, (0.0, 1.0)).all() for values in ocr.lists.values()),
    )
    return [
        findings.less_sparse(counts, boots),
        findings.distinct(kept, boots, top_overlap),
        static,
        findings.masking(experiments.get("mask")),
        findings.sink(experiments.get("sink")),
    ]


def _case_study(run: Path, grid: tuple[int, int]) -> dict | None:
    """Top heads per character, when `<run>/ocr` scored the `chars` task and its dataset is still where it was."""
    table, config = run / "ocr" / "scores.parquet", run / "ocr" / "config.yaml"
    if not (table.is_file() and config.is_file()):
        return None
    data = Path(yaml.safe_load(config.read_text(encoding="utf-8"))["data"])
    if not data.is_dir():
        return None
    samples = read_manifest(data)
    if not samples or any(sample.task != "chars" for sample in samples):
        return None
    columns = pq.read_table(table, columns=["sample", "layer", "head", "value"]).to_pydict()
    characters = character_heads({s.id: s.answer for s in samples}, columns, grid)
    return {"data": str(data), "characters": characters, "counts": top_head_counts(characters)}


def _draw(run: Path, values: dict[str, np.ndarray], found: dict) -> None:
    """The figures of an analysis, from its numbers and each kind's (layers, heads) ranking scores."""
    folder = run / "figures"
    figures.save(figures.donuts({kind: found[kind]["bins"] for kind in values}), folder / "sparsity")
    figures.save(figures.heatmaps(values), folder / "layer_head")
    for kind in values:
        figures.save(figures.frequency_plot(found[kind]["activation"], kind), folder / f"{kind}_frequency")
    curves = {kind: found[kind]["stability"]["settling"] for kind in values}
    figures.save(figures.settling_plot(curves), folder / "stability")
    if found.get("causal_relation"):
        others = {kind: values[kind] for kind in found["causal_relation"]}
        figures.save(figures.causal_scatter(values["causal"], others), folder / "causal")
    if "case_study" in found:
        maps = figures.character_maps(found["case_study"]["characters"], values["ocr"].shape)
        figures.save(maps, folder / "characters")
