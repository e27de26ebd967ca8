"""Assemble `<run>/report.html`: every table and figure of a run, images embedded, readable offline."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from ocrheads import __version__
from ocrheads.analysis.runs import KINDS, analyze_run, last_rule
from ocrheads.atomic import atomic_write_text
from ocrheads.eval.runner import results_grid
from ocrheads.scoring.runner import outcome_summary
from ocrheads.select import SelectionRule


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _kind_section(run: Path, kind: str) -> dict:
    folder = run / kind
    config = folder / "config.yaml"
    return {
        "config": config.read_text(encoding="utf-8") if config.is_file() else "",
        "outcomes": outcome_summary(folder),
        "frequency_figure": _image(run / "figures" / f"{kind}_frequency.png"),
    }


def build_report(run: str | Path, rule: SelectionRule | None = None) -> Path:
    """Analyse `run` (with `rule`, or the rule its heads were last selected with) and write report.html."""
    run = Path(run)
    analysis = analyze_run(run, rule or last_rule(run))
    figures = run / "figures"
    kinds = [kind for kind in KINDS if kind in analysis]
    page = (
        _environment()
        .get_template("page.html")
        .render(
            run=run.resolve().name,
            trained_by=_trained_by(run),
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=__version__,
            analysis=analysis,
            kinds={kind: _kind_section(run, kind) for kind in kinds},
            sparsity_figure=_image(figures / "sparsity.png"),
            layer_head_figure=_image(figures / "layer_head.png"),
            stability_figure=_image(figures / "stability.png"),
            causal_figure=_image(figures / "causal.png") if analysis.get("causal_relation") else None,
            similarity=analysis.get("similarity"),
            case_study=analysis.get("case_study"),
            characters_figure=_image(figures / "characters.png") if "case_study" in analysis else None,
            overlays=[(path.stem, _image(path)) for path in sorted((run / "overlays").glob("*.png"))],
            experiments=_experiments(run),
        )
    )
    target = run / "report.html"
    atomic_write_text(target, page)
    return target


def _trained_by(run: Path) -> list[dict] | None:
    """How the run's model was trained, where its checkpoint says (train-demo writes it): the report then tells a
    reader the command that rebuilds the model."""
    for config in sorted(run.glob("*/config.yaml")):
        if found := yaml.safe_load(config.read_text(encoding="utf-8")).get("trained_by"):
            return found
    return None


def _experiments(run: Path) -> list[dict]:
    """Every masking or sink experiment of the run: its intervention and its results grid."""
    found = []
    for table in sorted(run.glob("*/results.parquet")):
        config = yaml.safe_load((table.parent / "config.yaml").read_text(encoding="utf-8"))
        titles, grid = results_grid(pq.read_table(table).to_pylist())
        found.append(
            {"name": table.parent.name, "intervention": config["intervention"], "titles": titles, "grid": grid}
        )
    return found


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("ocrheads", "report"), autoescape=True, undefined=StrictUndefined, trim_blocks=True
    )
