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

from ocrheads.demo.run import run_demo
from ocrheads.demo.settings import BUNDLED_MODEL, DemoSettings
from ocrheads.demo.task import DemoTask
from ocrheads.eval.metrics import estimate
from ocrheads.models import load_adapter
from ocrheads.training.examples import Examples, exact_matches

SAMPLES = 200
UNSEEN_SEED = 777


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
    runs = record.get("runs", [])
    print(f"training: {record['training_seconds']} s for {record['history'][-1]['step']} steps in {len(runs)} "
          f"invocations, threads {record['settings']['threads']}")  # fmt: skip
    for run in runs:
        print(f"  from step {run['first_step']}: {run['command']} (code {run['code']}; {run['machine']})")
    if args.demo:
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            run_demo(DemoSettings(out=Path(folder) / "demo", model=args.model), Console(quiet=True))
            print(f"ocrheads demo (default settings): {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
