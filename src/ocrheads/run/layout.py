"""The layout of a run directory, written down once: every other module asks a RunDir for its paths and files.

<run>/
  <kind>/                  one folder per scoring kind (KindRun): ocr, retrieval, causal
    config.yaml            everything that determines the result; a rerun with another config is refused
    parts/NNNNNN.parquet   one finished batch each (with NNNNNN.outcomes.json); a part exists only once complete
    scores.parquet         the tidy table: one row per (sample, scored token, layer, head)
    scores.json            per-head score lists in the paper's reference format {"l{L}_h{H}": [...]}
    outcomes.jsonl         every sample: scored or not, what it wrote, c, and why not
    score_intervals.json   every head's score and bootstrap interval (written by analysis)
  <kind>_heads.json        the kind's selected heads, with the rule and source that made them
  <experiment>/            one folder per intervention experiment (ExperimentRun): mask, sink, ...
    config.yaml, parts/<condition>/<set>/<prompt>/NNNNNN.jsonl, predictions.jsonl, results.parquet, results.md
  analysis.json, figures/, overlays/, exports/, data/ (datasets `ocrheads demo` makes), report.html
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ocrheads.atomic import atomic_write_text
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head, HeadScores
from ocrheads.scoring.kinds import scoring_kind
from ocrheads.select import HeadSelection, SelectionRule, top_k

CONFIG = "config.yaml"


def read_config(folder: Path) -> dict:
    """A run folder's config.yaml, or {} where there is none yet."""
    path = Path(folder) / CONFIG
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_parquet(table: pa.Table, path: Path) -> None:
    """Whole or not at all: written beside, then renamed into place."""
    staging = path.with_name(f".{path.name}.partial")
    pq.write_table(table, staging)
    staging.replace(path)


class KindRun:
    """<run>/<kind>/: one scoring kind's config, parts and results."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.table_path = self.folder / "scores.parquet"
        self.scores_path = self.folder / "scores.json"
        self.outcomes_path = self.folder / "outcomes.jsonl"
        self.intervals_path = self.folder / "score_intervals.json"

    @property
    def kind(self) -> str:
        return self.folder.name

    def config(self) -> dict:
        return read_config(self.folder)

    def config_text(self) -> str:
        """The config as written, for a reader ("" where there is none)."""
        path = self.folder / CONFIG
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def part(self, number: int) -> Path:
        return self.folder / "parts" / f"{number:06d}.parquet"

    def write_part(self, number: int, table: pa.Table, outcomes: list) -> None:
        """Outcomes first, then the table renamed into place: a part file means the batch is complete."""
        part = self.part(number)
        part.parent.mkdir(parents=True, exist_ok=True)
        rows = [asdict(outcome) if is_dataclass(outcome) else outcome for outcome in outcomes]
        atomic_write_text(part.with_suffix(".outcomes.json"), json.dumps(rows))
        write_parquet(table, part)

    def merge_parts(self, batches: int, schema: pa.Schema) -> tuple[pa.Table, list[dict]]:
        """Every part's rows in one table of `schema` (parts an older version wrote for batches without entries had
        none), and every part's outcomes, in batch order."""
        parts = [self.part(number) for number in range(batches)]
        table = pa.concat_tables([pq.read_table(part).cast(schema) for part in parts])
        outcomes = [o for part in parts for o in json.loads(part.with_suffix(".outcomes.json").read_text("utf-8"))]
        return table, outcomes

    def write_results(self, table: pa.Table, outcomes: list[dict], scores: HeadScores) -> None:
        write_parquet(table, self.table_path)
        atomic_write_text(self.outcomes_path, "".join(json.dumps(o) + "\n" for o in outcomes))
        scores.to_reference(self.scores_path)

    def has_scores(self) -> bool:
        return self.scores_path.is_file()

    def scores(self) -> HeadScores:
        """The per-head lists, over the layers the kind scored (every layer for runs of models whose layers all have
        attention weights, and for imported files)."""
        config = self.config()
        scored = None
        if config.get("layer_kinds") and config.get("kind"):
            scored = scoring_kind(config["kind"]).scored_layers(tuple(config["layer_kinds"]))
        grid = tuple(config["grid"]) if "grid" in config else None
        return HeadScores.from_reference(self.scores_path, grid, scored)

    def write_imported(self, scores: HeadScores) -> None:
        scores.to_reference(self.scores_path)

    def columns(self, names: list[str]) -> dict[str, np.ndarray] | None:
        """Columns of scores.parquet, or None where the kind has no table (scores imported from a file)."""
        if not self.table_path.is_file():
            return None
        table = pq.read_table(self.table_path, columns=names)
        return {name: table[name].to_numpy(zero_copy_only=False) for name in names}

    def outcome_summary(self) -> dict | None:
        """Scored count, total, and samples not scored per reason (most frequent first)."""
        if not self.outcomes_path.is_file():
            return None
        outcomes = [json.loads(line) for line in self.outcomes_path.read_text(encoding="utf-8").splitlines()]
        reasons = Counter(o["reason"].split(" (")[0] for o in outcomes if not o["scored"])
        return {"total": len(outcomes), "scored": sum(o["scored"] for o in outcomes),
                "reasons": dict(reasons.most_common())}  # fmt: skip

    def write_intervals(self, intervals: dict) -> None:
        atomic_write_text(self.intervals_path, json.dumps(intervals, indent=1) + "\n")


class ExperimentRun:
    """<run>/<experiment>/: an intervention experiment's config, parts (one per batch of each arm) and results."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.predictions_path = self.folder / "predictions.jsonl"
        self.results_path = self.folder / "results.parquet"
        self.summary_path = self.folder / "results.md"

    @property
    def name(self) -> str:
        return self.folder.name

    def config(self) -> dict:
        return read_config(self.folder)

    def part(self, condition: str, dataset: str, prompt: str, number: int) -> Path:
        return self.folder / "parts" / condition / dataset / prompt / f"{number:06d}.jsonl"

    def write_part(self, path: Path, records: list[dict]) -> None:
        atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))

    def read_part(self, path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def write_results(self, records: list[dict], rows: list[dict], summary: str) -> None:
        atomic_write_text(self.predictions_path, "".join(json.dumps(record) + "\n" for record in records))
        write_parquet(pa.Table.from_pylist(rows), self.results_path)
        atomic_write_text(self.summary_path, summary)

    def has_results(self) -> bool:
        return self.results_path.is_file()

    def results(self) -> list[dict]:
        return pq.read_table(self.results_path).to_pylist()

    def summary(self) -> str:
        return self.summary_path.read_text(encoding="utf-8")

    def skipped(self) -> dict[str, int]:
        """Samples not run, per reason (most frequent first): each (dataset, sample) once, however many arms."""
        records = [json.loads(line) for line in self.predictions_path.read_text(encoding="utf-8").splitlines()]
        samples = {(r["dataset"], r["id"]): r["skipped"].split(" (")[0] for r in records if "skipped" in r}
        return dict(Counter(samples.values()).most_common())


class RunDir:
    """A run directory (see the module's docstring for its layout)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.analysis_path = self.root / "analysis.json"
        self.figures = self.root / "figures"
        self.overlays = self.root / "overlays"
        self.exports = self.root / "exports"
        self.report_path = self.root / "report.html"

    def kind(self, kind: str) -> KindRun:
        return KindRun(self.root / kind)

    def experiment(self, name: str) -> ExperimentRun:
        return ExperimentRun(self.root / name)

    def data(self, name: str) -> Path:
        return self.root / "data" / name

    def scores(self, kinds: list[str]) -> dict[str, HeadScores]:
        """The score lists present, in the order of `kinds`; none at all is an error."""
        found = {kind: self.kind(kind).scores() for kind in kinds if self.kind(kind).has_scores()}
        if not found:
            raise OcrHeadsError(
                f"{self.root} holds no scores; run `ocrheads score ocr|retrieval --out {self.root}` or "
                "`ocrheads scores import` first"
            )
        return found

    def scores_for_model(self, kinds: list[str], grid: tuple[int, int]) -> dict[str, HeadScores]:
        """The score lists present, each checked to be for a model of `grid`."""
        scores = self.scores(kinds)
        for kind, kind_scores in scores.items():
            kind_scores.check_grid(*grid, what=f"{self.root / kind}")
        return scores

    def heads_path(self, kind: str) -> Path:
        return self.root / f"{kind}_heads.json"

    def selection(self, kind: str) -> HeadSelection | None:
        path = self.heads_path(kind)
        return HeadSelection.from_json(path) if path.is_file() else None

    def write_selection(self, kind: str, selection: HeadSelection) -> None:
        selection.to_json(self.heads_path(kind))

    def last_rule(self, kinds: list[str]) -> SelectionRule:
        """The rule the run's head lists were selected with (the first kind's in `kinds` order), else the paper's."""
        for kind in kinds:
            if (selection := self.selection(kind)) is not None:
                return selection.rule
        return SelectionRule()

    def top_heads(self, kinds: list[str], kind: str, k: int, grid: tuple[int, int]) -> list[Head]:
        """The k best heads of `kind` by the rule of the run's last selection, for a model of `grid` (checked).

        Selected or not: top-k for masking and overlays ranks every head, as the paper's code does."""
        scores = self.scores_for_model(kinds, grid)
        if kind not in scores:
            raise OcrHeadsError(f"{self.root} holds no {kind} scores; run `ocrheads score {kind} --out {self.root}`")
        return top_k(scores[kind], k, self.last_rule(kinds))

    def experiments(self) -> list[ExperimentRun]:
        """Every intervention experiment with results, by folder name."""
        return [ExperimentRun(path.parent) for path in sorted(self.root.glob("*/results.parquet"))]

    def configs(self) -> list[dict]:
        """Every config in the run (kinds and experiments), by folder name."""
        return [read_config(path.parent) for path in sorted(self.root.glob(f"*/{CONFIG}"))]

    def write_analysis(self, found: dict) -> None:
        atomic_write_text(self.analysis_path, json.dumps(found, indent=1) + "\n")

    def write_report(self, page: str) -> None:
        atomic_write_text(self.report_path, page)
