"""Assemble a run's report page: every table and figure of the run, images embedded, readable offline."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from ocrheads import __version__
from ocrheads.analysis.runs import analyze_run
from ocrheads.eval.results import results_grid
from ocrheads.heads import LAYER_KIND_NAMES
from ocrheads.run import RunDir
from ocrheads.scoring.kinds import EFFECT, NAMES, scoring_kind
from ocrheads.select import SelectionRule


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _kind_section(run: RunDir, kind: str) -> dict:
    folder = run.kind(kind)
    return {
        "layers": _layers_scored(folder.config()),
        "config": folder.config_text(),
        "outcomes": folder.outcome_summary(),
        "frequency_figure": _image(run.figures / f"{kind}_frequency.png"),
    }


def _layers_scored(config: dict) -> str:
    """Which layers a kind's heads were looked for in: every layer, or those it scores and what the others are."""
    kinds = config.get("layer_kinds") or []
    scored = scoring_kind(config["kind"]).scored_layers(tuple(kinds)) if kinds and config.get("kind") else None
    if scored is None or len(scored) == len(kinds):
        return "every layer"
    others: dict[str, list[str]] = {}
    for layer, kind in enumerate(kinds):
        if layer not in scored:
            others.setdefault(LAYER_KIND_NAMES[kind], []).append(str(layer))
    left_out = "; ".join(f"{', '.join(layers)}: {kind}" for kind, layers in others.items())
    return f"{', '.join(map(str, scored))} of {len(kinds)} (not {left_out})"


def build_report(run: str | Path, rule: SelectionRule | None = None) -> Path:
    """Analyse `run` (with `rule`, or the rule its heads were last selected with) and write its report page."""
    run = RunDir(run)
    analysis = analyze_run(run.root, rule or run.last_rule(NAMES))
    figures = run.figures
    kinds = [kind for kind in NAMES if kind in analysis]
    page = (
        _environment()
        .get_template("page.html")
        .render(
            run=run.root.resolve().name,
            trained_by=_trained_by(run),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=__version__,
            analysis=analysis,
            kinds={kind: _kind_section(run, kind) for kind in kinds},
            sparsity_figure=_image(figures / "sparsity.png"),
            layer_head_figure=_image(figures / "layer_head.png"),
            stability_figure=_image(figures / "stability.png"),
            causal_figure=_image(figures / f"{EFFECT}.png") if analysis.get("causal_relation") else None,
            similarity=analysis.get("similarity"),
            case_study=analysis.get("case_study"),
            characters_figure=_image(figures / "characters.png") if "case_study" in analysis else None,
            overlays=[(path.stem, _image(path)) for path in sorted(run.overlays.glob("*.png"))],
            experiments=_experiments(run),
        )
    )
    run.write_report(page)
    return run.report_path


def _trained_by(run: RunDir) -> list[dict] | None:
    """How the run's model was trained, where its checkpoint says (train-demo writes it): the report then tells a
    reader the command that rebuilds the model."""
    return next((config["trained_by"] for config in run.configs() if config.get("trained_by")), None)


def _experiments(run: RunDir) -> list[dict]:
    """Every masking or sink experiment of the run: its intervention and its results grid."""
    found = []
    for experiment in run.experiments():
        titles, grid = results_grid(experiment.results())
        found.append({"name": experiment.name, "intervention": experiment.config()["intervention"], "titles": titles,
                      "grid": grid})  # fmt: skip
    return found


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("ocrheads", "report"), autoescape=True, undefined=StrictUndefined, trim_blocks=True
    )
