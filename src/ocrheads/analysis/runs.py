"""Selection and analysis of a run directory's scores: what is read and written goes through its RunDir."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import stats

from ocrheads.analysis import figures, findings
from ocrheads.analysis.case_study import character_heads, top_head_counts
from ocrheads.analysis.stability import CONFIDENCE, Bootstrap, RunEntries, settling_curve, split_half
from ocrheads.analysis.stats import activation, both_scored, correlation, score_bins, similarity
from ocrheads.data.manifest import read_manifest
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head, HeadScores
from ocrheads.run import KindRun, RunDir
from ocrheads.scoring.kinds import COPYING, EFFECT, NAMES, READING, scoring_kind
from ocrheads.select import HeadSelection, SelectionRule, ranked, ranking_scores, select, selected


def _run_entries(folder: KindRun, scores: HeadScores, activation: float) -> RunEntries:
    """A scored kind's entries for resampling: per-token entries grouped by their sample (from its table); kinds
    whose lists are one entry per sample already are their own groups; imported scores, one unit per entry."""
    columns, config = folder.columns(["sample"]), folder.config()
    if columns is None or not config:
        return RunEntries.from_scores(scores, activation)
    entries = len(next(iter(scores.lists.values())))
    if scoring_kind(config["kind"]).per_sample:
        return RunEntries.from_scores(scores, activation, np.arange(entries))
    column, heads = columns["sample"], len(scores.order())  # one row per scored head and entry
    names = column[::heads]
    grouped = len(names) == entries and len(column) == entries * heads
    return RunEntries.from_scores(scores, activation, np.unique(names, return_inverse=True)[1] if grouped else None)


def select_run(run: str | Path, rule: SelectionRule, replicates: int = 1000, seed: int = 0) -> dict[str, HeadSelection]:
    """Each kind's selection, recording how many of its heads the rule keeps at their bootstrap lower ends."""
    run = RunDir(run)
    selections = {}
    for kind, scores in run.scores(NAMES).items():
        folder = run.kind(kind)
        boot = Bootstrap.of(_run_entries(folder, scores, rule.activation), rule, replicates, seed)
        robust = {"heads": boot.robust(selected(scores, rule).ravel(), rule), "replicates": replicates, "seed": seed,
                  "confidence": CONFIDENCE}  # fmt: skip
        selections[kind] = replace(select(scores, rule, source=str(folder.scores_path)), robust=robust)
        run.write_selection(kind, selections[kind])
    return selections


def analyze_run(run: str | Path, rule: SelectionRule, top_k: int = 10, replicates: int = 1000, seed: int = 0) -> dict:
    """Sparsity and static activation per kind; OCR vs retrieval similarity when both are there; bootstrap
    intervals, split-half reliability and the settling curve per kind; the paper's findings with verdicts; the
    per-character case study when the OCR run scored the `chars` task. Writes the analysis, each kind's score
    intervals and the figures into the run."""
    run = RunDir(run)
    scores = run.scores(NAMES)
    found: dict = {"rule": rule.__dict__}
    selections = {kind: select(kind_scores, rule) for kind, kind_scores in scores.items()}
    values = {kind: ranking_scores(kind_scores, rule) for kind, kind_scores in scores.items()}
    orders = {kind: ranked(kind_scores, rule) for kind, kind_scores in scores.items()}
    kept = {kind: selected(kind_scores, rule).ravel() for kind, kind_scores in scores.items()}
    entries = {kind: _run_entries(run.kind(kind), s, rule.activation) for kind, s in scores.items()}
    boots = {kind: Bootstrap.of(entries[kind], rule, replicates, seed) for kind in scores}
    for kind, kind_scores in scores.items():
        ranking = (values[kind], orders[kind], kept[kind])
        summary, intervals = _kind_summary(kind_scores, ranking, rule, top_k, entries[kind], boots[kind], seed)
        run.kind(kind).write_intervals(intervals)
        found[kind] = summary
    if READING in scores and COPYING in scores:
        reading, copying = scores[READING], scores[COPYING]
        if reading.grid != copying.grid:
            raise OcrHeadsError(f"{run.root}: {READING} scores are {reading.grid} heads but {COPYING} {copying.grid}")
        found["similarity"] = similarity(
            set(selections[READING].heads),
            set(selections[COPYING].heads),
            orders[READING],
            orders[COPYING],
            values[READING],
            values[COPYING],
            top_k,
        )
    if EFFECT in scores:
        found["causal_method"] = _causal_method(run.kind(EFFECT), top_k)
        found["causal_relation"] = {
            kind: _relation(values[EFFECT], values[kind], orders[EFFECT], orders[kind], top_k)
            for kind in (READING, COPYING)
            if kind in scores and scores[kind].grid == scores[EFFECT].grid
        }
    found["findings"] = [finding.to_dict() for finding in _findings(run, scores, orders, kept, boots, rule)]
    case_study = _case_study(run.kind(READING), scores[READING].grid) if READING in scores else None
    if case_study:
        found["case_study"] = case_study
    run.write_analysis(found)
    _draw(run.figures, values, found)
    return found


def _relation(causal: np.ndarray, other: np.ndarray, causal_order, other_order, k: int) -> dict:
    """How a kind's scores relate to the causal ones: Spearman over heads, and how many of its top k are top-k
    causal heads (k at most the heads both rank)."""
    k = min(k, len(causal_order), len(other_order))
    shared = len(set(causal_order[:k]) & set(other_order[:k]))
    rho = correlation(stats.spearmanr, *both_scored(causal, other))
    return {"spearman": rho, "top_k": k, "top_k_shared": shared}


def _causal_method(folder: KindRun, top_k: int) -> dict:
    """How the causal scores were taken (estimate method, ablation, which heads were also measured by ablation) and,
    where heads were measured, how the estimate agreed with ablation: Spearman of the per-head means over the heads
    measured (each over the samples that measured it), and how many of ablation's top k the estimate ranks in its top
    k when every head was measured."""
    options = folder.config().get("options", {})
    measured = None
    if options.get("exact"):
        measured = "every head"
    elif options.get("exact_top"):
        measured = f"each sample's top {options['exact_top']} estimated heads"
    method = options.get("method", "atp")
    found = {"method": method, "steps": 1 if method == "atp" else options.get("steps"),
             "ablation": options.get("ablation"), "measured": measured, "agreement": None}  # fmt: skip
    columns = folder.columns(["layer", "head", "estimate", "exact"])
    if columns is None or measured is None or not len(columns["head"]):
        return found
    flat = columns["layer"].astype(np.int64) * (int(columns["head"].max()) + 1) + columns["head"]
    size, where = int(flat.max()) + 1, ~np.isnan(columns["exact"])
    counts = np.bincount(flat[where], minlength=size)
    shown = np.flatnonzero(counts)
    estimate, exact = (np.bincount(flat[where], columns[name][where], size)[shown] / counts[shown]
                       for name in ("estimate", "exact"))  # fmt: skip
    agreement = {"spearman": correlation(stats.spearmanr, estimate, exact), "heads": len(shown), "top_k": None}
    if len(shown) == size:
        k = min(top_k, len(shown))
        agreement["top_k"] = {"k": k, "shared": len(set(np.argsort(estimate)[:k]) & set(np.argsort(exact)[:k]))}
    found["agreement"] = agreement
    return found


def _kind_summary(
    scores: HeadScores,
    ranking: tuple[np.ndarray, list[Head], np.ndarray],
    rule: SelectionRule,
    top_k: int,
    entries: RunEntries,
    boot: Bootstrap,
    seed: int,
) -> tuple[dict, dict]:
    """One kind's numbers, from its (ranking scores, heads best first, flat selection mask) under `rule`, and every
    head's score and bootstrap interval."""
    values, order, kept = ranking
    low, high = boot.interval()

    def row(head: Head) -> list:
        index = head.layer * scores.heads + head.head
        return [head.name, round(float(values[head.layer, head.head]), 4), round(float(low[index]), 4),
                round(float(high[index]), 4)]  # fmt: skip

    intervals = {name: {"score": score, "low": lo, "high": hi} for name, score, lo, hi in map(row, scores.order())}
    summary = {
        "heads": len(scores.order()),
        "scored_layers": list(scores.scored_layers),
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
    return summary, intervals


def _unit(entries: RunEntries) -> str:
    """What the bootstrap draws: samples, or entries where the score file does not say which sample each is."""
    return "sample" if entries.grouped else "entry (the score file does not say which sample an entry is from)"


def _findings(run: RunDir, scores, orders, kept, boots, rule: SelectionRule) -> list[findings.Finding]:
    counts = {kind: int(mask.sum()) for kind, mask in kept.items()}
    top_overlap = ""
    if READING in scores and COPYING in scores:
        shared = len(set(orders[READING][:7]) & set(orders[COPYING][:7]))
        top_overlap = f"top-7 sets share {shared} of 7 heads"
    experiments = findings.experiment_rows(run)
    reading = scores.get(READING)
    static = findings.statically_activated(
        reading.flat(reading.frequency_above(rule.activation)) if reading else np.zeros(0),
        reading.flat(reading.means()) if reading else np.zeros(0),
        boots.get(READING),
        bool(reading) and all(np.isin(values, (0.0, 1.0)).all() for values in reading.lists.values()),
    )
    return [
        findings.less_sparse(counts, boots),
        findings.distinct(kept, boots, top_overlap),
        static,
        findings.masking(experiments.get("mask")),
        findings.sink(experiments.get("sink")),
    ]


def _case_study(folder: KindRun, grid: tuple[int, int]) -> dict | None:
    """Top heads per character, when the reading kind scored the `chars` task and its dataset is still there."""
    columns, data = folder.columns(["sample", "layer", "head", "value"]), folder.config().get("data")
    if columns is None or not data or not Path(data).is_dir():
        return None
    samples = read_manifest(data)
    if not samples or any(sample.task != "chars" for sample in samples):
        return None
    columns = {name: values.tolist() for name, values in columns.items()}
    characters = character_heads({s.id: s.answer for s in samples}, columns, grid)
    return {"data": str(data), "characters": characters, "counts": top_head_counts(characters)}


def _draw(folder: Path, values: dict[str, np.ndarray], found: dict) -> None:
    """The figures of an analysis, from its numbers and each kind's (layers, heads) ranking scores."""
    figures.save(figures.donuts({kind: found[kind]["bins"] for kind in values}), folder / "sparsity")
    figures.save(figures.heatmaps(values), folder / "layer_head")
    for kind in values:
        figures.save(figures.frequency_plot(found[kind]["activation"], kind), folder / f"{kind}_frequency")
    curves = {kind: found[kind]["stability"]["settling"] for kind in values}
    figures.save(figures.settling_plot(curves), folder / "stability")
    if found.get("causal_relation"):
        others = {kind: values[kind] for kind in found["causal_relation"]}
        figures.save(figures.causal_scatter(values[EFFECT], others), folder / EFFECT)
    if "case_study" in found:
        maps = figures.character_maps(found["case_study"]["characters"], values[READING].shape)
        figures.save(maps, folder / "characters")
