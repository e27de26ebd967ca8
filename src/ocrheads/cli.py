"""The `ocrheads` command: a thin layer that parses arguments and calls the library."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import yaml

from ocrheads.distributed import current_shard
from ocrheads.errors import OcrHeadsError

Command = Callable[[argparse.Namespace], None]


def _render_options(parser: argparse.ArgumentParser) -> None:
    from ocrheads.data.fonts import NAMED_FONTS
    from ocrheads.data.samples import RenderStyle

    default = RenderStyle()
    group = parser.add_argument_group("rendering")
    group.add_argument(
        "--font", nargs="+", default=[default.font],
        help=f"{', '.join(NAMED_FONTS)}, or a .ttf/.otf path; several fonts are used in turn, sample by sample",
    )  # fmt: skip
    group.add_argument("--font-size", type=int, default=default.font_size, help="pixels (default %(default)s)")
    group.add_argument("--wrap-width", type=int, default=default.wrap_width, help="characters per line")
    group.add_argument("--lines-per-page", type=int, default=default.lines_per_page)
    group.add_argument("--margin", type=int, default=default.margin, help="pixels around the text")
    group.add_argument("--pitch", type=int, help="typewriter layout: every character centred in a cell this wide")
    group.add_argument("--line-height", type=int, help="fixed line spacing in pixels (default: fit the font)")


def _generator(sub: argparse._SubParsersAction, task: str, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(task, help=help_text, description=help_text)
    parser.add_argument("--out", required=True, type=Path, help="dataset folder to create")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modality", choices=("image", "text"), default="image", help="pages, or plain text")
    parser.add_argument("--text-source", default="faker", help="faker, a .txt/.jsonl file, or hf:NAME[:CONFIG[:SPLIT]]")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--overlays", type=int, default=0, metavar="N", help="draw answer boxes of the first N samples")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _render_options(parser)
    parser.set_defaults(run=_run_generate, task=task)
    return parser


def _run_generate(args: argparse.Namespace) -> None:
    from ocrheads.data.generate import OVERLAYS, generate
    from ocrheads.data.samples import RenderStyle

    style = RenderStyle(
        args.font[0], args.font_size, args.wrap_width, args.lines_per_page, args.margin, args.pitch, args.line_height
    )
    options = {
        key: value
        for key in ("n", "lengths", "digits", "intro", "needles", "per_char", "alphabet", "length", "kinds")
        if (value := getattr(args, key, None)) is not None
    }
    samples = generate(
        args.task,
        args.out,
        seed=args.seed,
        modality=args.modality,
        text_source=args.text_source,
        style=style,
        overwrite=args.overwrite,
        overlays=args.overlays,
        progress=not args.quiet,
        fonts=args.font if len(args.font) > 1 else (),
        **options,
    )
    print(f"wrote {len(samples)} {args.task} samples to {args.out}")
    if args.overlays and args.modality == "image":
        print(f"answer-box overlays in {args.out / OVERLAYS}")


def _run_show(args: argparse.Namespace) -> None:
    from ocrheads.data.manifest import read_manifest
    from ocrheads.data.overlay import write_overlays

    samples = read_manifest(args.dataset)
    if args.sample:
        samples = _pick_samples(samples, args.sample, args.dataset)
    out = args.out or args.dataset / "overlays"
    written = write_overlays(args.dataset, samples, out, scale=args.scale)
    print(f"wrote {len(written)} overlay pages to {out}")


def _pick_samples(samples: list, names: list[str], dataset: Path) -> list:
    by_id = {sample.id: sample for sample in samples}
    missing = [name for name in names if name not in by_id]
    if missing:
        raise OcrHeadsError(f"no sample {', '.join(missing)} in {dataset}; ids look like {samples[0].id}")
    return [by_id[name] for name in names]


def _data_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="generate synthetic text-in-image tasks, or draw their answer boxes")
    tasks = data.add_subparsers(required=True, metavar="TASK")
    from ocrheads.data.docs import KINDS
    from ocrheads.data.passkey import CASE_STUDY_ALPHABET, DEFAULT_LENGTHS

    passkey = _generator(tasks, "passkey", "a numeric pass key hidden in filler text (the paper's main task)")
    passkey.add_argument("--n", type=int, default=600)
    passkey.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="haystack characters")
    passkey.add_argument("--digits", type=int, default=5, help="pass key length")
    passkey.add_argument("--no-intro", dest="intro", action="store_false", help="leave out the paper's soft prompt")

    niah = _generator(tasks, "niah", "a fact sentence (needle) in filler text, asked about afterwards")
    niah.add_argument("--n", type=int, default=600)
    niah.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="haystack characters")
    niah.add_argument("--needles", help="JSONL of {needle, question, answer}; default: seeded Faker needles")

    chars = _generator(tasks, "chars", "single-character pass keys, the paper's per-character case study")
    chars.add_argument("--per-char", type=int, default=100)
    chars.add_argument("--alphabet", default=CASE_STUDY_ALPHABET)
    chars.add_argument("--length", type=int, default=1024, help="haystack characters")

    docs = _generator(tasks, "docs", "synthetic forms, receipts, invoices and tables with key/value questions")
    docs.add_argument("--n", type=int, default=200)
    docs.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))

    show = tasks.add_parser("show", help="draw every answer box on a sample's evidence pages")
    show.add_argument("dataset", type=Path)
    show.add_argument("--sample", nargs="+", help="sample ids (default: all)")
    show.add_argument("--out", type=Path, help="default: DATASET/overlays")
    show.add_argument("--scale", type=int, default=2, help="enlarge pages this many times")
    show.set_defaults(run=_run_show)


def _pixel_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs or []:
        name, _, value = pair.partition("=")
        if not value:
            raise OcrHeadsError(f"--pixels takes NAME=VALUE pairs, got {pair!r}")
        options[name] = yaml.safe_load(value)
    return options


def _model_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    from ocrheads.devices import DEVICES, DTYPES

    group = parser.add_argument_group("model")
    if required:
        group.add_argument("--model", required=True, help="hub id or local checkpoint folder")
    group.add_argument("--device", default="cpu", help=f"{DEVICES} (default %(default)s)")
    group.add_argument("--dtype", choices=list(DTYPES), default="auto", help="auto: the checkpoint's own")
    group.add_argument("--device-map", choices=("auto",), help="spread a model too big for one GPU over all GPUs")
    group.add_argument("--pixels", nargs="+", metavar="NAME=VALUE", help="processor bounds, e.g. max_pixels=200704")
    text = "folder for the native conversions of remote-code InternVL checkpoints (default: beside the hub cache)"
    group.add_argument("--convert-cache", type=Path, help=text)


def _model_spec(args: argparse.Namespace):
    """The checkpoint and its load options, checked (config only) but not loaded."""
    from ocrheads.models import ModelSpec

    pixels = _pixel_options(args.pixels)
    spec = ModelSpec(str(args.model), args.device, args.dtype, args.device_map, pixels, args.convert_cache)
    spec.grid  # noqa: B018 - reads the config: a missing checkpoint or a bad --pixels fails here, in one line
    return spec


def _run_score(args: argparse.Namespace) -> None:
    from ocrheads.scoring.options import scoring_options
    from ocrheads.scoring.runner import score

    names = ("row", "alignment", "evidence_rule", "evidence_threshold", "box_rounding", "argmax_keys", "retrieval",
             "answers", "max_new_tokens", "min_correct")  # fmt: skip
    overrides = {name: getattr(args, name) for name in names}
    options = _causal_options(args) if args.kind == "causal" else scoring_options(args.preset, **overrides)
    folder = score(
        args.kind,
        _model_spec(args),
        args.data,
        args.out,
        options,
        model_name=args.model,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        progress=not args.quiet,
    )
    if current_shard().leader:
        _report_outcomes(folder)


def _causal_options(args: argparse.Namespace):
    from ocrheads.scoring.causal import CausalOptions

    given = {"answers": args.answers, "max_new_tokens": args.max_new_tokens, "mean_samples": args.mean_samples,
             "heads_per_pass": args.heads_per_pass}  # fmt: skip
    chosen = {"ablation": args.ablation, "metric": args.metric, "exact": args.exact, "per_token": args.per_token}
    return CausalOptions(**chosen, **{key: value for key, value in given.items() if value is not None})


def _report_outcomes(folder: Path) -> None:
    from ocrheads.run import KindRun

    summary = KindRun(folder).outcome_summary()
    print(f"scored {summary['scored']} of {summary['total']} samples into {folder}")
    for reason, count in summary["reasons"].items():
        print(f"  not scored ({count}): {reason}")
    if not summary["scored"]:
        print(f"  no sample was scored: the score files are empty; see {KindRun(folder).outcomes_path} for each sample")


def _run_import(args: argparse.Namespace) -> None:
    from ocrheads.exchange import import_file
    from ocrheads.models import checkpoint_config, checkpoint_grid

    grid = checkpoint_grid(checkpoint_config(args.model)) if args.model else None
    written = import_file(args.file, getattr(args, "from"), args.kind, args.out, grid, args.model)
    print(f"imported {args.file} ({getattr(args, 'from')}) into {written}")


def _run_export(args: argparse.Namespace) -> None:
    from ocrheads.exchange import export_run, side_file

    written = export_run(args.run_dir, args.kind, args.to, args.out, args.top)
    print(f"wrote {written} and {side_file(written).name}")


def _run_select(args: argparse.Namespace) -> None:
    from ocrheads.analysis.runs import select_run
    from ocrheads.run import RunDir

    for kind, selection in select_run(args.run_dir, _rule(args)).items():
        robust = selection.robust["heads"]
        print(f"{kind}: {len(selection.heads)} heads ({robust} at their interval's lower end) -> "
              f"{RunDir(args.run_dir).heads_path(kind)}")  # fmt: skip
        print("  top: " + ", ".join(head.name for head in selection.heads[:10]))


def _rule(args: argparse.Namespace):
    from ocrheads.select import SelectionRule

    return SelectionRule(args.rule, threshold=args.threshold)


def _run_analyze(args: argparse.Namespace) -> None:
    from ocrheads.analysis.runs import analyze_run
    from ocrheads.run import RunDir
    from ocrheads.scoring.kinds import COPYING, NAMES, READING

    found = analyze_run(args.run_dir, _rule(args), top_k=args.top_k)
    for kind in NAMES:
        if kind in found:
            print(f"{kind}: {found[kind]['selected']} heads above the rule; bins {found[kind]['bins']}")
    if "similarity" in found:
        print(f"{READING} vs {COPYING} heads: {found['similarity']}")
    print(f"wrote {RunDir(args.run_dir).analysis_path}")


def _run_report(args: argparse.Namespace) -> None:
    from ocrheads.report.build import build_report

    rule = _rule(args) if args.rule else None
    print(f"wrote {build_report(args.run_dir, rule)}")


def _run_overlay(args: argparse.Namespace) -> None:
    from ocrheads.data.manifest import read_manifest
    from ocrheads.heads import Head
    from ocrheads.run import RunDir
    from ocrheads.scoring.kinds import NAMES, READING
    from ocrheads.scoring.overlays import write_overlays

    samples = _pick_samples(read_manifest(args.data), args.sample, args.data)
    spec = _model_spec(args)
    run = RunDir(args.run_dir)
    heads = (
        [Head.parse(name) for name in args.heads] if args.heads else run.top_heads(NAMES, READING, args.top, spec.grid)
    )
    out = run.overlays
    written = write_overlays(spec, args.data, samples, heads, out)
    print(f"wrote {len(written)} attention overlays to {out}")


def _heads_parsers(sub: argparse._SubParsersAction) -> None:
    from ocrheads.exchange import FORMATS
    from ocrheads.scoring.causal import MAX_BATCH_TOKENS
    from ocrheads.scoring.options import PRESETS, ScoringOptions
    from ocrheads.select import RULES

    score = sub.add_parser("score", help="score every head as an OCR head or a retrieval head")
    score.add_argument("kind", choices=("ocr", "retrieval", "causal"))
    score.add_argument(
        "--data", required=True, type=Path, help="dataset folder (image samples for ocr, text for retrieval)"
    )
    score.add_argument("--out", required=True, type=Path, help="run directory")
    score.add_argument(
        "--preset", choices=list(PRESETS), default="default", help="paper-code: the paper code's choices"
    )
    fields = ScoringOptions.model_fields
    for name in ("row", "alignment", "evidence_rule", "box_rounding", "argmax_keys", "retrieval", "answers"):
        choices = fields[name].annotation.__args__
        score.add_argument(f"--{name.replace('_', '-')}", choices=choices, help=f"default {fields[name].default}")
    score.add_argument("--evidence-threshold", type=float)
    score.add_argument("--max-new-tokens", type=int)
    score.add_argument("--min-correct", type=float)
    score.add_argument("--batch-size", type=int, default=1)
    causal = score.add_argument_group("causal", "how much each head's output matters for the answer (gold by default)")
    causal.add_argument("--ablation", choices=("zero", "mean"), default="zero", help="what an ablated head outputs")
    causal.add_argument("--metric", choices=("logprob", "logit"), default="logprob", help="of each answer token")
    causal.add_argument("--exact", action="store_true", help="also ablate each head in its own pass (validation)")
    causal.add_argument("--mean-samples", type=int, help="mean ablation: samples the means are taken over (32)")
    causal.add_argument("--per-token", action="store_true", help="one estimate per answer token (a backward each)")
    causal.add_argument("--heads-per-pass", type=int, help="--exact: batch copies per pass (default: a layer's heads)")
    text = "padded tokens per attribution pass: a batch is split into micro-batches of at most this many (memory)"
    causal.add_argument("--max-batch-tokens", type=int, default=MAX_BATCH_TOKENS, help=text + " (default %(default)s)")
    score.add_argument("--quiet", action="store_true")
    _model_options(score)
    score.set_defaults(run=_run_score)

    scores = sub.add_parser("scores", help="import score files and head lists of the paper and of other tools")
    actions = scores.add_subparsers(required=True, metavar="ACTION")
    text = "read a score file (into RUN/KIND/scores.json) or a head list (into RUN/KIND_heads.json)"
    imports = actions.add_parser("import", help=text, description=text)
    imports.add_argument("file", type=Path)
    imports.add_argument("--from", choices=FORMATS, default="paper", help="its format (default %(default)s)")
    imports.add_argument("--kind", choices=("ocr", "retrieval", "causal"), required=True)
    imports.add_argument("--out", type=Path, required=True, help="run directory")
    imports.add_argument("--model", help="the checkpoint the heads are of: its grid and name are checked")
    imports.set_defaults(run=_run_import)

    heads = sub.add_parser("heads", help="export a run's head scores or head list for other tools")
    actions = heads.add_subparsers(required=True, metavar="ACTION")
    text = "write a run's scores (paper, retrieval-head, sparsemm) or selected heads (qrhead, json, csv)"
    export = actions.add_parser("export", help=text, description=text)
    export.add_argument("run_dir", metavar="RUN", type=Path)
    export.add_argument("--to", choices=FORMATS, required=True)
    export.add_argument("--kind", choices=("ocr", "retrieval", "causal"), default="ocr")
    export.add_argument("--out", type=Path, help="file to write (default RUN/exports/KIND-FORMAT.EXT)")
    export.add_argument("--top", type=int, help="head lists: the K best heads instead of the selected ones")
    export.set_defaults(run=_run_export)

    for name, run, text in (
        ("select", _run_select, "select OCR and retrieval heads of a run"),
        ("analyze", _run_analyze, "sparsity, similarity and activation frequency of a run's heads"),
    ):
        parser = sub.add_parser(name, help=text, description=text)
        parser.add_argument("run_dir", metavar="RUN", type=Path, help="run directory")
        parser.add_argument("--rule", choices=RULES, default="paper")
        parser.add_argument("--threshold", type=float, default=0.1)
        if name == "analyze":
            parser.add_argument("--top-k", type=int, default=10)
        parser.set_defaults(run=run)

    report = sub.add_parser("report", help="one self-contained HTML page with every figure and table of a run")
    report.add_argument("run_dir", metavar="RUN", type=Path, help="run directory")
    report.add_argument("--rule", choices=RULES, help="default: the rule of the last select, else paper")
    report.add_argument("--threshold", type=float, default=0.1)
    report.set_defaults(run=_run_report)

    overlay = sub.add_parser("overlay", help="draw where heads look on a sample's pages while it writes the answer")
    overlay.add_argument("run_dir", metavar="RUN", type=Path, help="run directory; overlays go to RUN/overlays")
    overlay.add_argument("--data", required=True, type=Path, help="dataset folder of image samples")
    overlay.add_argument("--sample", required=True, nargs="+", help="sample ids")
    overlay.add_argument("--heads", nargs="+", metavar="lL_hH", help="default: the --top best OCR heads of RUN")
    overlay.add_argument("--top", type=int, default=3)
    _model_options(overlay)
    overlay.set_defaults(run=_run_overlay)


def _run_intervention(args: argparse.Namespace) -> None:
    from ocrheads.eval.conditions import masking_conditions, sink_conditions
    from ocrheads.eval.datasets import load_eval_set
    from ocrheads.eval.runner import Intervention, evaluate
    from ocrheads.run import ExperimentRun

    eval_sets = [load_eval_set(spec, args.limit, args.data_seed, args.max_pages) for spec in args.dataset]
    model = _model_spec(args)
    seeds = range(args.random_seeds)
    if args.experiment == "mask":
        conditions = masking_conditions(
            args.run_dir, model.grid, args.k, seeds,
            exclude_selected=args.exclude_selected, layer_matched=args.layer_matched,
        )  # fmt: skip
        intervention = Intervention("mask", mode=args.mode, mean_samples=args.mean_samples)
    else:
        conditions = sink_conditions(args.run_dir, model.grid, args.top, seeds)
        intervention = Intervention(
            "sink", beta=args.beta, sinks=args.sinks, sink_tokens=args.sink_tokens,
            sink_threshold=args.sink_threshold, receivers=args.receivers,
        )  # fmt: skip
    folder = evaluate(
        args.name or args.experiment, model, conditions, eval_sets, args.run_dir,
        intervention=intervention, prompts=args.prompts, max_new_tokens=args.max_new_tokens,
        cot_max_new_tokens=args.cot_max_new_tokens, batch_size=args.batch_size, anls=args.anls,
        config={"model": args.model, "data_seed": args.data_seed, "max_pages": args.max_pages, "limit": args.limit},
        progress=not args.quiet,
    )  # fmt: skip
    if current_shard().leader:
        experiment = ExperimentRun(folder)
        print(experiment.summary(), end="")
        print(f"wrote {experiment.results_path} and {experiment.predictions_path}")


def _intervention_parsers(sub: argparse._SubParsersAction) -> None:
    from ocrheads.eval.metrics import ANLS_PRESETS
    from ocrheads.eval.prompts import PROMPTS

    for name, text in (
        ("mask", "mask the top-k OCR and retrieval heads, and random heads, and measure answer accuracy"),
        ("sink", "move attention-sink mass in the top OCR heads (and controls) and measure answer accuracy"),
    ):
        parser = sub.add_parser(name, help=text, description=text)
        parser.add_argument("run_dir", metavar="RUN", type=Path, help="scored run directory; results go to RUN/NAME")
        parser.add_argument(
            "--dataset", required=True, nargs="+", metavar="SET",
            help="docvqa[=PATH|HUB_ID], mp_docvqa[=...], nq=PATH, hotpotqa=PATH, or a synthetic set's folder",
        )  # fmt: skip
        parser.add_argument("--random-seeds", type=int, default=3, metavar="N", help="random-head arms, seeds 0..N-1")
        parser.add_argument("--prompts", nargs="+", choices=PROMPTS, default=["direct"])
        parser.add_argument("--limit", type=int, help="the first N samples of each set")
        parser.add_argument("--max-pages", type=int, default=8, help="MP-DocVQA: skip longer documents (counted)")
        parser.add_argument("--data-seed", type=int, default=1234, help="NQ/HotpotQA evidence sampling")
        parser.add_argument("--max-new-tokens", type=int, default=32)
        parser.add_argument("--anls", choices=list(ANLS_PRESETS), default="lmms-eval-docvqa", help="ANLS normalisation")
        parser.add_argument("--cot-max-new-tokens", type=int, default=256)
        parser.add_argument("--batch-size", type=int, default=1)
        _model_options(parser)
        parser.add_argument("--name", help=f"results folder under RUN (default {name})")
        parser.add_argument("--quiet", action="store_true")
        if name == "mask":
            parser.add_argument("--k", type=int, nargs="+", default=[10, 20], help="heads masked per arm")
            parser.add_argument(
                "--mode", choices=("zero", "uniform", "mean"), default="zero",
                help="zero: the paper's; uniform: even attention; mean: the head's mean output over each set",
            )  # fmt: skip
            parser.add_argument("--mean-samples", type=int, default=32, help="mode mean: samples per set averaged")
            parser.add_argument("--exclude-selected", action="store_true", help="random heads avoid selected heads")
            parser.add_argument("--layer-matched", action="store_true", help="random heads in the OCR heads' layers")
        else:
            parser.add_argument("--top", type=int, default=2, help="heads edited per arm (paper: 2)")
            parser.add_argument("--beta", type=float, default=0.4, help="share of the sink's mass it keeps")
            parser.add_argument(
                "--sinks", choices=("first", "mass"), default="first",
                help="first: the first --sink-tokens tokens; mass: keys drawing >= --sink-threshold of the heads' "
                "attention at the last prompt token",
            )  # fmt: skip
            parser.add_argument("--sink-tokens", type=int, default=1, help="sinks first: how many tokens")
            parser.add_argument("--sink-threshold", type=float, default=0.3, help="sinks mass: least attention share")
            parser.add_argument("--receivers", choices=("all", "image"), default="all", help="where the mass goes")
        parser.set_defaults(run=_run_intervention, experiment=name)


def _run_demo(args: argparse.Namespace) -> None:
    from ocrheads.demo.run import DemoSettings, run_demo

    settings = DemoSettings(
        out=args.out, model=args.model or DemoSettings.model, score_samples=args.score_samples,
        eval_samples=args.eval_samples, k=tuple(args.k), random_seeds=args.random_seeds, batch_size=args.batch_size,
        device=args.device, dtype=args.dtype, device_map=args.device_map, pixels=_pixel_options(args.pixels),
        convert_cache=args.convert_cache,
    )  # fmt: skip
    run_demo(settings)


def _run_train_demo(args: argparse.Namespace) -> None:
    from ocrheads.training.train import RECIPE, Stage, TrainSettings, train_demo

    custom = {"steps": args.steps, "learning_rate": args.learning_rate, "decay": args.decay,
              "text_every": args.text_every, "eval_samples": args.eval_samples}  # fmt: skip
    given = {name: value for name, value in custom.items() if value is not None}
    if given and "steps" not in given:
        raise OcrHeadsError("a stage of your own needs --steps (without any stage option, the shipped recipe runs)")
    stages = (Stage(**given),) if given else RECIPE
    settings = TrainSettings(seed=args.seed, stages=stages, batch_size=args.batch_size, threads=args.threads,
                             key_alignment=not args.no_key_alignment, tied_reading=not args.untied_reading)  # fmt: skip
    command = "ocrheads " + shlex.join(args.argv)
    record = train_demo(args.out, settings, snapshot=args.snapshot, resume=args.resume, command=command,
                        device=args.device, workers=args.workers)  # fmt: skip
    print(f"trained in {record['training_seconds']} s; held-out exact match: {record['history'][-1]}")
    print(f"wrote {args.out}")


def _run_verify(args: argparse.Namespace) -> int:
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from ocrheads.data.generate import generate
    from ocrheads.data.manifest import open_page, read_manifest
    from ocrheads.verify import verify

    if (args.data is None) != (args.sample is None):
        raise OcrHeadsError("give --data and --sample together, or neither (then a short passkey page is generated)")
    spec = _model_spec(args)
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or Path(scratch) / "sample"
        if args.data is None:
            generate("passkey", data, n=1, lengths=(200,), digits=5, seed=0, progress=False)
        [sample] = _pick_samples(read_manifest(data), [args.sample or "passkey-00000"], data)
        if sample.modality != "image":
            raise OcrHeadsError(f"sample {sample.id} is a text sample; verify needs an image sample")
        pages = [open_page(data, sample, page) for page in range(len(sample.pages))]
        checks = verify(spec.load(), sample, pages, eager_budget=int(args.eager_budget_gib * 2**30))
    table = Table(title=f"ocrheads verify: {args.model} ({args.dtype}, {args.device}) on {sample.id}")
    for column in ("check", "result", "value", "detail"):
        table.add_column(column, overflow="fold")
    colours = {"pass": "green", "fail": "bold red", "info": "cyan"}
    for check in checks:
        table.add_row(check.name, f"[{colours[check.status]}]{check.status}", check.value, check.detail)
    Console().print(table)
    failed = [check.name for check in checks if check.status == "fail"]
    print(f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0


def _verify_parser(sub: argparse._SubParsersAction) -> None:
    text = "check, once per checkpoint, transformers version or GPU, that captured attention is exact and the image "
    text += "geometry right; exits 1 when a check fails"
    verify = sub.add_parser("verify", help=text, description=text)
    _model_options(verify)
    verify.add_argument("--data", type=Path, help="dataset folder (default: one generated passkey page)")
    verify.add_argument("--sample", help="sample id in --data")
    verify.add_argument("--eager-budget-gib", type=float, default=2.0, help="largest eager attention to compare")
    verify.set_defaults(run=_run_verify)


def _run_convert(args: argparse.Namespace) -> None:
    from ocrheads.models import convert

    source = convert.source_folder(str(args.checkpoint))
    out = convert.convert(source, args.out, system_message=args.system_message, overwrite=args.overwrite)
    print(f"wrote the native InternVL checkpoint {out} (see {out / 'CONVERTED.md'})")


def _convert_parser(sub: argparse._SubParsersAction) -> None:
    text = "write a native transformers checkpoint from a remote-code InternVL one (internvl_chat: InternVL 1.5, 2, "
    text += "2.5 with InternLM2), weights streamed tensor by tensor; every --model does this once by itself"
    convert = sub.add_parser("convert", help=text, description=text)
    convert.add_argument("checkpoint", help="remote-code checkpoint folder, or its hub id")
    convert.add_argument("out", type=Path, help="folder to write")
    convert.add_argument("--system-message", help="the prompt's system message (default: the checkpoint's own)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT once the new folder is complete")
    convert.set_defaults(run=_run_convert)


def _demo_parsers(sub: argparse._SubParsersAction) -> None:
    from ocrheads.demo.run import DemoSettings
    from ocrheads.devices import DEVICES
    from ocrheads.training.train import RECIPE, TrainSettings

    text = "the whole pipeline, offline, on the bundled demo model (or --model CHECKPOINT) and fresh synthetic "
    text += "passkeys, ending in RUN/report.html"
    demo = sub.add_parser("demo", help=text, description=text)
    default = DemoSettings()
    demo.add_argument("--out", type=Path, default=default.out, help="run directory (default %(default)s)")
    demo.add_argument("--model", type=Path, help="another checkpoint folder (default: the bundled demo model)")
    demo.add_argument("--score-samples", type=int, default=default.score_samples, help="per modality, for scoring")
    demo.add_argument("--eval-samples", type=int, default=default.eval_samples, help="per modality, for masking")
    demo.add_argument("--k", type=int, nargs="+", default=list(default.k), help="heads masked per arm")
    demo.add_argument("--random-seeds", type=int, default=default.random_seeds)
    demo.add_argument("--batch-size", type=int, default=default.batch_size)
    _model_options(demo, required=False)
    demo.set_defaults(run=_run_demo)

    text = "train the demo model from scratch on the demo task (seeded): the shipped recipe's stages in one run, or "
    text += "one stage of your own; --resume continues an interrupted run exactly"
    train = sub.add_parser("train-demo", help=text, description=text)
    settings = TrainSettings()
    train.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    train.add_argument("--seed", type=int, default=settings.seed)
    train.add_argument("--batch-size", type=int, default=settings.batch_size)
    train.add_argument("--threads", type=int, default=settings.threads, help="torch CPU threads")
    train.add_argument("--device", default="cpu", help=f"where the model trains: {DEVICES} (default %(default)s)")
    text = "processes that build batches ahead of the steps: worth it on a GPU, not on a CPU the steps already use"
    train.add_argument("--workers", type=int, default=0, help=text + " (default %(default)s)")
    train.add_argument("--snapshot", type=Path, help="also save the model and optimiser here at every check")
    train.add_argument("--resume", type=Path, help="continue an interrupted run from its --snapshot folder")
    text = "leave out the loss that pulls page key tokens towards their text twins (a recipe variant)"
    train.add_argument("--no-key-alignment", action="store_true", help=text)
    text = "page tokens name their characters through a probe of their own, not the tied output layer, so they need "
    text += "not sit where text tokens do (a recipe variant)"
    train.add_argument("--untied-reading", action="store_true", help=text)
    stage = train.add_argument_group("one stage instead of the recipe", f"the recipe: {len(RECIPE)} stages, "
                                     f"{sum(s.steps for s in RECIPE)} steps (training.train.RECIPE)")  # fmt: skip
    stage.add_argument("--steps", type=int)
    stage.add_argument("--learning-rate", type=float, help="peak, after warm-up (2e-3)")
    stage.add_argument("--decay", type=float, help="final fraction of the steps, falling to 10 %% (0.25)")
    stage.add_argument("--eval-samples", type=int, help="held-out samples per check (32)")
    stage.add_argument("--text-every", type=int, help="after the text-only start, one step in this many is text (2)")
    train.set_defaults(run=_run_train_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocrheads", description="OCR heads and retrieval heads of VLMs.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    _data_parser(sub)
    _heads_parsers(sub)
    _intervention_parsers(sub)
    _demo_parsers(sub)
    _verify_parser(sub)
    _convert_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # as given, for records that say how a run was started
    try:
        return args.run(args) or 0
    except OcrHeadsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except torch.OutOfMemoryError as err:  # where no runner named the batch (loading, verify, overlay)
        reason = str(err).splitlines()[0] if str(err) else "out of memory"
        print(f"error: out of GPU memory ({reason}); use a smaller --dtype, or --device-map auto to spread the model "
              "over more GPUs", file=sys.stderr)  # fmt: skip
        return 2


if __name__ == "__main__":
    sys.exit(main())
