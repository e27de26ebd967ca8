"""The bundled demo model (or another train-demo checkpoint): exact match on fresh passkeys at the demo task's
defaults (a seed it never saw), its recorded training, and (with --demo) the wall time of `ocrheads demo` with
default settings.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_demo.py [--model CHECKPOINT] [--demo]
"""

import argparse
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

from ocrheads.demo.examples import Examples, exact_matches
from ocrheads.demo.run import BUNDLED_MODEL, DemoSettings, run_demo
from ocrheads.demo.task import DemoTask
from ocrheads.eval.metrics import estimate
from ocrheads.models import load_adapter

SAMPLES = 200
UNSEEN_SEED = 777


def chain_of(record: dict):
    """The record and the records of the stages it resumed from (the bundled model's stages; a one-run record is
    its own chain)."""
    while record:
        yield record
        record = (record.get("resumed_from") or {}).get("record")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--demo", action="store_true", help="also time `ocrheads demo` with default settings")
    args = parser.parse_args()
    adapter = load_adapter(args.model)
    examples = Examples(DemoTask(), UNSEEN_SEED)
    for modality in ("image", "text"):
        hits = exact_matches(adapter, [examples.example(i, modality) for i in range(SAMPLES)])
        found = estimate([float(hit) for hit in hits])
        print(f"{modality} passkeys: exact match {found.mean:.3f} [{found.low:.3f}, {found.high:.3f}] (n={found.n})")
    record = yaml.safe_load((args.model / "training.yaml").read_text(encoding="utf-8"))
    stages = list(chain_of(record))
    seconds, steps = (
        sum(stage["training_seconds"] for stage in stages),
        sum(stage["history"][-1]["step"] for stage in stages),
    )
    print(f"training: {seconds} s for {steps} steps in {len(stages)} stages, threads {record['settings']['threads']}")
    if args.demo:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            run_demo(DemoSettings(out=Path(folder) / "demo", model=args.model), Console(quiet=True))
            print(f"ocrheads demo (default settings): {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
