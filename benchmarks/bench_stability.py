"""Stability numbers for a paper-sized run: 3,600 samples x 784 heads (Qwen2-VL-7B's 28 x 28), OCR-like (about five
answer-token entries per sample, resampled with their sample).

Times the bootstrap (1,000 replicates), split-half reliability (50 splits) and the settling curve (30 draws per
size), against the direct way for scale: resampling the entries and taking each head's mean, replicate by
replicate (timed on 20 replicates, the figure scaled to 1,000).

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_stability.py
"""

from __future__ import annotations

import time

import numpy as np

from ocrheads.analysis.stability import Bootstrap, RunEntries, settling_curve, split_half
from ocrheads.heads import Head, HeadScores
from ocrheads.select import SelectionRule

SAMPLES, GRID, REPLICATES = 3600, (28, 28), 1000


def table(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(entries, heads) scores: most heads near zero, a few dozen often hitting, as in the paper's files."""
    samples = np.repeat(np.arange(SAMPLES), rng.integers(3, 8, SAMPLES))
    heads = GRID[0] * GRID[1]
    rates = np.where(rng.random(heads) < 0.06, rng.uniform(0.2, 0.8, heads), rng.uniform(0, 0.02, heads))
    values = (rng.random((len(samples), heads)) < rates) * rng.choice([0.5, 1.0], size=(len(samples), heads))
    return values.astype(np.float32), samples


def main() -> None:
    rng = np.random.default_rng(0)
    values, samples = table(rng)
    scores = HeadScores({Head(i // GRID[1], i % GRID[1]): values[:, i] for i in range(values.shape[1])}, *GRID)
    rule = SelectionRule("paper")
    times = {}
    start = time.perf_counter()
    entries = RunEntries.from_scores(scores, rule.activation, samples)
    times["per-sample sums"] = time.perf_counter() - start
    start = time.perf_counter()
    boot = Bootstrap.of(entries, rule, REPLICATES)
    boot.interval()
    times[f"bootstrap, {REPLICATES} replicates, with intervals"] = time.perf_counter() - start
    start = time.perf_counter()
    split_half(entries, rule, 10)
    times["split halves, 50 splits"] = time.perf_counter() - start
    start = time.perf_counter()
    settling_curve(entries, rule, 10)
    times["settling curve, 30 draws x 10 sizes"] = time.perf_counter() - start
    start = time.perf_counter()
    order = np.argsort(samples, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(samples[order])) + 1)
    for _ in range(20):
        drawn = np.concatenate([groups[i] for i in rng.integers(0, SAMPLES, SAMPLES)])
        values[drawn].mean(0)
    direct = (time.perf_counter() - start) * REPLICATES / 20
    print(f"{SAMPLES} samples ({len(samples)} entries) x {values.shape[1]} heads")
    print("| step | seconds |")
    print("|---|---|")
    for step, seconds in times.items():
        print(f"| {step} | {seconds:.2f} |")
    bootstrap = times[f"bootstrap, {REPLICATES} replicates, with intervals"]
    print(f"| direct resampling, {REPLICATES} replicates (from 20) | {direct:.1f} ({direct / bootstrap:.0f}x) |")


if __name__ == "__main__":
    main()
