"""`ocrheads mask` and `ocrheads sink`: intervene on a run's top heads (and seeded random heads) and measure answers."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from ocrheads.cli.common import bad_page_option, model_options, model_spec
from ocrheads.distributed import current_shard


def _add_intervention(parser: argparse.ArgumentParser, name: str) -> None:
    from ocrheads.eval.metrics import ANLS_PRESETS
    from ocrheads.eval.prompts import PROMPTS

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
    model_options(parser)
    parser.add_argument("--name", help=f"results folder under RUN (default {name})")
    parser.add_argument("--quiet", action="store_true")
    bad_page_option(parser)
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


COMMANDS = {
    "mask": (
        "mask the top-k OCR and retrieval heads, and random heads, and measure answer accuracy",
        partial(_add_intervention, name="mask"),
    ),
    "sink": (
        "move attention-sink mass in the top OCR heads (and controls) and measure answer accuracy",
        partial(_add_intervention, name="sink"),
    ),
}


def _run_intervention(args: argparse.Namespace) -> None:
    from ocrheads.eval.conditions import masking_conditions, sink_conditions
    from ocrheads.eval.datasets import load_eval_set
    from ocrheads.eval.runner import Intervention, evaluate
    from ocrheads.run import ExperimentRun

    eval_sets = [load_eval_set(spec, args.limit, args.data_seed, args.max_pages) for spec in args.dataset]
    model = model_spec(args)
    seeds = range(args.random_seeds)
    if args.experiment == "mask":
        conditions = masking_conditions(
            args.run_dir, model.grid, args.k, seeds, exclude_selected=args.exclude_selected,
            layer_matched=args.layer_matched, layer_kinds=model.layer_kinds,
        )  # fmt: skip
        intervention = Intervention("mask", mode=args.mode, mean_samples=args.mean_samples)
    else:
        conditions = sink_conditions(args.run_dir, model.grid, args.top, seeds, model.layer_kinds)
        intervention = Intervention(
            "sink", beta=args.beta, sinks=args.sinks, sink_tokens=args.sink_tokens,
            sink_threshold=args.sink_threshold, receivers=args.receivers,
        )  # fmt: skip
    folder = evaluate(
        args.name or args.experiment, model, conditions, eval_sets, args.run_dir,
        intervention=intervention, prompts=args.prompts, max_new_tokens=args.max_new_tokens,
        cot_max_new_tokens=args.cot_max_new_tokens, batch_size=args.batch_size, anls=args.anls,
        config={"model": args.model, "data_seed": args.data_seed, "max_pages": args.max_pages, "limit": args.limit},
        stop_at_bad_page=args.stop_at_bad_page, progress=not args.quiet,
    )  # fmt: skip
    if current_shard().leader:
        experiment = ExperimentRun(folder)
        print(experiment.summary(), end="")
        for reason, count in experiment.skipped().items():
            print(f"not run ({count} samples): {reason}")
        print(f"wrote {experiment.results_path} and {experiment.predictions_path}")
