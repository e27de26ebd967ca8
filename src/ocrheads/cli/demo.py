"""`ocrheads demo` (the whole pipeline on the bundled model) and `ocrheads train-demo` (training that model)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ocrheads.cli.common import load_options, model_options
from ocrheads.errors import OcrHeadsError


def _add_demo(demo: argparse.ArgumentParser) -> None:
    from ocrheads.demo.settings import DemoSettings

    default = DemoSettings()
    demo.add_argument("--out", type=Path, default=default.out, help="run directory (default %(default)s)")
    demo.add_argument("--model", type=Path, help="another checkpoint folder (default: the bundled demo model)")
    demo.add_argument("--score-samples", type=int, default=default.score_samples, help="per modality, for scoring")
    demo.add_argument("--eval-samples", type=int, default=default.eval_samples, help="per modality, for masking")
    demo.add_argument("--k", type=int, nargs="+", default=list(default.k), help="heads masked per arm")
    demo.add_argument("--random-seeds", type=int, default=default.random_seeds)
    demo.add_argument("--batch-size", type=int, default=default.batch_size)
    model_options(demo, required=False)
    demo.set_defaults(run=_run_demo)


def _add_train_demo(train: argparse.ArgumentParser) -> None:
    from ocrheads.device_names import DEVICES
    from ocrheads.training.schedule import RECIPE, TrainSettings

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
                                     f"{sum(s.steps for s in RECIPE)} steps (training.schedule.RECIPE)")  # fmt: skip
    stage.add_argument("--steps", type=int)
    stage.add_argument("--learning-rate", type=float, help="peak, after warm-up (2e-3)")
    stage.add_argument("--decay", type=float, help="final fraction of the steps, falling to 10 %% (0.25)")
    stage.add_argument("--eval-samples", type=int, help="held-out samples per check (32)")
    stage.add_argument("--text-every", type=int, help="after the text-only start, one step in this many is text (2)")
    train.set_defaults(run=_run_train_demo)


COMMANDS = {
    "demo": (
        "the whole pipeline, offline, on the bundled demo model (or --model CHECKPOINT) and fresh synthetic "
        "passkeys, ending in a report page in RUN",
        _add_demo,
    ),
    "train-demo": (
        "train the demo model from scratch on the demo task (seeded): the shipped recipe's stages in one run, or "
        "one stage of your own; --resume continues an interrupted run exactly",
        _add_train_demo,
    ),
}


def _run_demo(args: argparse.Namespace) -> None:
    from ocrheads.demo.run import run_demo
    from ocrheads.demo.settings import DemoSettings

    settings = DemoSettings(
        out=args.out, model=args.model or DemoSettings.model, score_samples=args.score_samples,
        eval_samples=args.eval_samples, k=tuple(args.k), random_seeds=args.random_seeds, batch_size=args.batch_size,
        **load_options(args),
    )  # fmt: skip
    run_demo(settings)


def _run_train_demo(args: argparse.Namespace) -> None:
    from ocrheads.training.schedule import RECIPE, Stage, TrainSettings
    from ocrheads.training.train import train_demo

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
