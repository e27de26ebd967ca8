"""Selection and analysis of a run directory's score files (`<run>/ocr/scores.json`, `<run>/retrieval/...`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from ocrheads.analysis import figures
from ocrheads.analysis.case_study import character_heads, top_head_counts
from ocrheads.analysis.stats import activation, score_bins, similarity
from ocrheads.atomic import atomic_write_text
from ocrheads.data.manifest import read_manifest
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head, HeadScores
from ocrheads.select import HeadSelection, SelectionRule, ranked, ranking_scores, select, top_k

KINDS = ("ocr", "retrieval")


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


def select_run(run: str | Path, rule: SelectionRule) -> dict[str, HeadSelection]:
    run = Path(run)
    selections = {}
    for kind, scores in run_scores(run).items():
        selections[kind] = select(scores, rule, source=str(run / kind / "scores.json"))
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


def analyze_run(run: str | Path, rule: SelectionRule, top_k: int = 10) -> dict:
    """Sparsity and static activation per kind; OCR vs retrieval similarity when both are there; the per-character
    case study when the OCR run scored the `chars` task. Writes analysis.json and figures/."""
    run = Path(run)
    scores = run_scores(run)
    found: dict = {"rule": rule.__dict__}
    selections = {kind: select(kind_scores, rule) for kind, kind_scores in scores.items()}
    values = {kind: ranking_scores(kind_scores, rule) for kind, kind_scores in scores.items()}
    orders = {kind: ranked(kind_scores, rule) for kind, kind_scores in scores.items()}
    for kind, kind_scores in scores.items():
        found[kind] = {
            "heads": kind_scores.layers * kind_scores.heads,
            "selected": len(selections[kind].heads),
            "bins": score_bins(values[kind]),
            "top": [[head.name, round(float(values[kind][head.layer, head.head]), 4)] for head in orders[kind][:top_k]],
            "activation": activation(kind_scores),
        }
    if len(scores) == 2:
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
    case_study = _case_study(run, scores["ocr"].grid) if "ocr" in scores else None
    if case_study:
        found["case_study"] = case_study
    atomic_write_text(run / "analysis.json", json.dumps(found, indent=1) + "\n")
    _draw(run, values, found)
    return found


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
    if "case_study" in found:
        maps = figures.character_maps(found["case_study"]["characters"], values["ocr"].shape)
        figures.save(maps, folder / "characters")
