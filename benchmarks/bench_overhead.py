"""Whole-process cost of `ocrheads score ocr` against the physical limit: a plain SDPA `generate` of the same pages.

Both are fresh processes on the bundled demo model and the same 40 demo pages, batch size 16, greedy, at most 32
new tokens (scoring's default), ending at the end-of-sequence token: the baseline loads the model, encodes the
same prompts and generates, nothing more; `score ocr` also captures the answer rows, maps the answer boxes to
tokens and writes its tables. Runs alternate (baseline, ours) five times; the ratio is of the median CPU times
(user + system of the child process).

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_overhead.py [--pairs 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BATCH, NEW_TOKENS, SAMPLES = 16, 32, 40


def plain_generate(data: Path, device: str = "cpu") -> None:
    """The baseline's whole job: load, encode every batch as scoring does, generate greedily."""
    import torch
    from PIL import Image

    from ocrheads.data.manifest import read_manifest
    from ocrheads.demo.settings import BUNDLED_MODEL
    from ocrheads.models import load_adapter

    adapter = load_adapter(BUNDLED_MODEL, device=device)
    samples = read_manifest(data)
    pad = adapter.processor.tokenizer.pad_token_id
    for first in range(0, len(samples), BATCH):
        batch_samples = samples[first : first + BATCH]
        pages = [[Image.open(data / page).convert("RGB") for page in s.pages] for s in batch_samples]
        batch = adapter.encode([adapter.prompt(s.question, len(p)) for s, p in zip(batch_samples, pages, strict=True)],
                               pages)  # fmt: skip
        with torch.no_grad():
            adapter.model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=pad)


def _cpu_seconds(command: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (both processes)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        plain_generate(args.worker, args.device)
        return
    from ocrheads.data.generate import generate
    from ocrheads.demo.settings import BUNDLED_MODEL
    from ocrheads.demo.task import DemoTask

    task = DemoTask()
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "pages"
        options = dict(lengths=(task.context_length,), digits=task.digits, intro=task.intro, style=task.style(0))
        generate("passkey", data, n=SAMPLES, seed=2026, fonts=task.fonts, **options)
        baseline = [sys.executable, __file__, "--worker", str(data), "--device", args.device]
        times = {"generate": [], "score": []}
        for pair in range(args.pairs):
            times["generate"].append(_cpu_seconds(baseline))
            run = Path(scratch) / f"run{pair}"
            ours = [sys.executable, "-m", "ocrheads", "score", "ocr", "--model", str(BUNDLED_MODEL), "--data",
                    str(data), "--out", str(run), "--batch-size", str(BATCH), "--device", args.device,
                    "--quiet"]  # fmt: skip
            times["score"].append(_cpu_seconds(ours))
            print(f"pair {pair}: generate {times['generate'][-1]:.1f} s, score {times['score'][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"| {SAMPLES} demo pages, batch {BATCH}, {args.device} | plain SDPA generate | ocrheads score ocr | ratio |")
    print("|---|---|---|---|")
    print(f"| median CPU time of {args.pairs} alternating runs | {medians['generate']:.1f} s | "
          f"{medians['score']:.1f} s | {medians['score'] / medians['generate']:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
