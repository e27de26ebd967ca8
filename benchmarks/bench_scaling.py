"""How scoring cost grows with sequence length: time and peak memory from about 1k to 16k tokens, ours against the
paper's method, on the mid-sized random Qwen2-VL of mid_model.py (cells from bench_scoring.py, each in its own
process). Tokens here are mostly image tokens, and pages grow with the haystack (about 190 tokens a page), so
the same sweep is also the sweep over the number of images. The paper's method is run only while its attention
matrices fit in memory (--paper-up-to tokens). Writes the table and benchmarks/scaling.png (log-log) with
fitted slopes: 1 means linear growth, 2 quadratic.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scaling.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from isolated import run_isolated
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

SCORING = str(Path(__file__).with_name("bench_scoring.py"))
LENGTHS = [3500, 7500, 15000, 30000, 60000]  # haystack characters: about 1k, 2k, 4k, 8k and 16k tokens


def slope(results: list[dict], key: str) -> float:
    tokens = np.log([r["tokens"] for r in results])
    return float(np.polyfit(tokens, np.log([max(r[key], 1e-3) for r in results]), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS, help="haystack characters")
    parser.add_argument("--paper-up-to", type=int, default=9000, help="run the paper's method up to this many tokens")
    args = parser.parse_args()
    found: dict[str, list[dict]] = {"ours": [], "paper": []}
    for length in args.lengths:
        ours = run_isolated(SCORING, "ours", length)
        found["ours"].append(ours)
        if ours["tokens"] <= args.paper_up_to:
            found["paper"].append(run_isolated(SCORING, "paper", length))
    header = ["tokens", "pages", "ours: time / peak memory", "paper's method: time / peak memory", "time ratio",
              "memory ratio"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|---|---|---|---|---|---|")
    papers = {r["chars"]: r for r in found["paper"]}
    for ours in found["ours"]:
        paper = papers.get(ours["chars"])
        cells = [f"{ours['seconds']:.1f} s / {ours['peak_mib']:.0f} MiB"]
        if paper:
            cells += [f"{paper['seconds']:.1f} s / {paper['peak_mib']:.0f} MiB"]
            cells += [f"{paper['seconds'] / ours['seconds']:.1f}x", f"{paper['peak_mib'] / ours['peak_mib']:.0f}x"]
        else:
            cells += [f"not run (over {args.paper_up_to} tokens)", "", ""]
        print(f"| {ours['tokens']} | {ours['pages']} | " + " | ".join(cells) + " |")
    for method, results in found.items():
        if len(results) > 1:
            print(f"{method}: log-log slope of time {slope(results, 'seconds'):.2f}, "
                  f"of peak memory {slope(results, 'peak_mib'):.2f}")  # fmt: skip
    figure = Figure(figsize=(9, 3.6))
    for axis, key, title in zip(figure.subplots(1, 2), ("seconds", "peak_mib"), ("time (s)", "peak memory (MiB)"),
                                strict=True):  # fmt: skip
        for method, label in (("ours", "ours (capture on SDPA)"), ("paper", "generate + output_attentions")):
            results = found[method]
            axis.loglog([r["tokens"] for r in results], [r[key] for r in results], "o-", label=label)
        ticks = [r["tokens"] for r in found["ours"]]
        axis.set_xticks(ticks, [f"{t / 1000:.1f}k" for t in ticks])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("sequence length (tokens)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    figure.axes[0].legend()
    figure.tight_layout()
    figure.savefig(Path(__file__).with_name("scaling.png"), dpi=120)


if __name__ == "__main__":
    main()
