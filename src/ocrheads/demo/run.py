"""`ocrheads demo`: the paper's whole pipeline, offline, on the bundled model and freshly generated passkeys.

Stages: data, OCR scoring (image passkeys), retrieval scoring (text passkeys), selection and analysis,
attention overlays, masking (top-k OCR vs top-k retrieval vs seeded random heads), sink redistribution, report.
Every stage resumes: a rerun of the same command skips what is done.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import yaml
from rich.console import Console

from ocrheads.analysis.runs import analyze_run, select_run
from ocrheads.data.generate import generate
from ocrheads.data.manifest import read_manifest
from ocrheads.demo.settings import DemoSettings
from ocrheads.demo.task import DemoTask
from ocrheads.errors import OcrHeadsError
from ocrheads.eval.conditions import masking_conditions, sink_conditions
from ocrheads.eval.datasets import load_eval_set
from ocrheads.eval.runner import Intervention, evaluate
from ocrheads.models import ModelSpec
from ocrheads.report.build import build_report
from ocrheads.run import RunDir
from ocrheads.scoring.kinds import COPYING, NAMES, READING
from ocrheads.scoring.options import scoring_options
from ocrheads.scoring.overlays import write_overlays
from ocrheads.scoring.runner import score
from ocrheads.select import SelectionRule


def _dataset(folder: Path, modality: str, n: int, seed: int, task: DemoTask) -> Path:
    """Generate the demo set once; a rerun reuses it, unless it was made with other settings."""
    options = {"n": n, "lengths": (task.context_length,), "digits": task.digits, "intro": task.intro}
    if (folder / "dataset.yaml").is_file():
        made = yaml.safe_load((folder / "dataset.yaml").read_text(encoding="utf-8"))
        if (made["modality"], made["seed"], made["samples"]) != (modality, seed, n):
            raise OcrHeadsError(f"{folder} was generated with other settings; give the demo a new --out")
        return folder
    style = task.style(0)
    fonts = task.fonts if modality == "image" else ()
    generate("passkey", folder, seed=seed, modality=modality, style=style, fonts=fonts, progress=True, **options)
    return folder


def run_demo(settings: DemoSettings, console: Console | None = None) -> Path:
    """Run every stage into `settings.out` and return the report's path."""
    console = console or Console()
    if not (Path(settings.model) / "config.json").is_file():
        raise OcrHeadsError(
            f"no checkpoint at {settings.model} (no config.json); pass a checkpoint folder with --model, or train "
            "the demo model with `ocrheads train-demo --out DIR` and pass --model DIR"
        )
    out, task = settings.out, settings.task
    run = RunDir(out)
    stage = iter(range(1, 9))

    def say(text: str) -> None:
        console.rule(f"[bold]{next(stage)}/8 {text}")

    say("synthetic passkeys (image pages and plain text)")
    score_seed, eval_seed = settings.data_seed, settings.data_seed + 1
    sets = {
        name: _dataset(run.data(name), modality, n, seed, task)
        for name, modality, n, seed in (
            ("score-image", "image", settings.score_samples, score_seed),
            ("score-text", "text", settings.score_samples, score_seed),
            ("eval-image", "image", settings.eval_samples, eval_seed),
            ("eval-text", "text", settings.eval_samples, eval_seed),
        )
    }
    load = ("device", "dtype", "device_map", "pixels", "convert_cache", "prompt_format", "decoding")
    spec = ModelSpec(str(settings.model), **{name: getattr(settings, name) for name in load})
    adapter = spec.load()
    options = scoring_options()
    for kind, name in ((READING, "score-image"), (COPYING, "score-text")):
        say(f"{kind} head scores on {name}")
        score(kind, adapter, sets[name], out, options, model_name="bundled demo model", batch_size=settings.batch_size)
        summary = run.kind(kind).outcome_summary()
        console.print(f"scored {summary['scored']} of {summary['total']} samples")

    say("selection and analysis")
    rule = SelectionRule()
    for kind, selection in select_run(out, rule).items():
        console.print(f"{kind}: {len(selection.heads)} heads pass the rule; top " +
                      ", ".join(head.name for head in selection.heads[:5]))  # fmt: skip
    analyze_run(out, rule)

    say("attention overlays of the top OCR heads")
    samples = read_manifest(sets["score-image"])[:2]
    write_overlays(adapter, sets["score-image"], samples, run.top_heads(NAMES, READING, 2, adapter.grid), run.overlays)

    eval_sets = [load_eval_set(str(sets[name])) for name in ("eval-image", "eval-text")]
    seeds = range(settings.random_seeds)
    common = dict(max_new_tokens=task.digits + 2, batch_size=settings.batch_size,
                  config={"model": str(settings.model), "demo": _recorded(settings)})  # fmt: skip
    say("masking top-k OCR vs retrieval vs random heads")
    conditions = masking_conditions(out, adapter.grid, settings.k, seeds, layer_kinds=adapter.layer_kinds)
    evaluate("mask", adapter, conditions, eval_sets, out, intervention=Intervention("mask"), **common)
    console.print(run.experiment("mask").summary())

    say(f"sink redistribution in the top-{settings.sink_top} heads (beta {settings.beta})")
    conditions = sink_conditions(out, adapter.grid, settings.sink_top, seeds, adapter.layer_kinds)
    sink = Intervention("sink", beta=settings.beta)
    evaluate("sink", adapter, conditions, eval_sets, out, intervention=sink, **common)
    console.print(run.experiment("sink").summary())

    say("report")
    report = build_report(out, rule)
    console.print(f"wrote {report}")
    return report


def _recorded(settings: DemoSettings) -> dict:
    """The settings as plain YAML values (paths as text, tuples as lists), so a rerun's config compares equal.

    Where it ran and where a checkpoint was converted are left out: runs record the hardware, and a rerun may use
    another device or cache."""
    recorded = json.loads(json.dumps(asdict(settings), default=str))
    return {key: value for key, value in recorded.items() if key not in ("device", "device_map", "convert_cache")}
