"""Selection and analysis of a run directory's score files (`<run>/ocr/scores.json`, `<run>/retrieval/...`)."""

from __future__ import annotations

import json
from pathlib import Path

from ocrheads.analysis.stats import activation, score_bins, similarity
from ocrheads.atomic import atomic_write_text
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import HeadScores
from ocrheads.select import HeadSelection, SelectionRule, ranked, ranking_scores, select

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


def analyze_run(run: str | Path, rule: SelectionRule, top_k: int = 10) -> dict:
    """Sparsity and static activation per kind; OCR vs retrieval similarity when both are there."""
    run = Path(run)
    scores = run_scores(run)
    found: dict = {"rule": rule.__dict__}
    selections = {kind: select(kind_scores, rule) for kind, kind_scores in scores.items()}
    for kind, kind_scores in scores.items():
        selection = selections[kind]
        top = zip(selection.heads[:top_k], selection.scores, strict=False)
        found[kind] = {
            "heads": kind_scores.layers * kind_scores.heads,
            "selected": len(selection.heads),
            "bins": score_bins(ranking_scores(kind_scores, rule)),
            "top": [[head.name, round(score, 4)] for head, score in top],
            "activation": activation(kind_scores),
        }
    if len(scores) == 2:
        ocr, retrieval = scores["ocr"], scores["retrieval"]
        if ocr.grid != retrieval.grid:
            raise OcrHeadsError(f"{run}: OCR scores are {ocr.grid} heads but retrieval scores {retrieval.grid}")
        found["similarity"] = similarity(
            set(selections["ocr"].heads),
            set(selections["retrieval"].heads),
            ranked(ocr, rule),
            ranked(retrieval, rule),
            ranking_scores(ocr, rule),
            ranking_scores(retrieval, rule),
            top_k,
        )
    atomic_write_text(run / "analysis.json", json.dumps(found, indent=1) + "\n")
    return found
