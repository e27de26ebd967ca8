"""Demo-model variants side by side (issue 20): does page reading use other heads than text copying?

For each checkpoint: reading exact match per modality on fresh passkeys (as bench_demo.py), then the demo pipeline
(`ocrheads demo` with its defaults): the Jaccard and top-10 overlap of the selected OCR and retrieval heads, the
top-4 heads of each, and the cross-masking numbers: the top-k OCR heads masked on text passkeys and the top-k
retrieval heads masked on pages, against k random heads (seeds pooled), each with its 95 % interval.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_variants.py NAME=CHECKPOINT [NAME=CHECKPOINT ...]
     [--reading-samples 200] [--out runs/variants]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
from rich.console import Console

from ocrheads.demo.run import run_demo
from ocrheads.demo.settings import DemoSettings
from ocrheads.demo.task import DemoTask
from ocrheads.eval.metrics import estimate
from ocrheads.models import load_adapter
from ocrheads.training.examples import Examples, exact_matches

UNSEEN_SEED = 777


def interval(mean: float, low: float, high: float) -> str:
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def reading(checkpoint: Path, samples: int) -> dict[str, str]:
    adapter = load_adapter(checkpoint)
    examples = Examples(DemoTask(), UNSEEN_SEED)
    found = {}
    for modality in ("image", "text"):
        hits = estimate(
            [float(hit) for hit in exact_matches(adapter, [examples.example(i, modality) for i in range(samples)])]
        )
        found[modality] = interval(hits.mean, hits.low, hits.high)
    return found


def masking_cells(run: Path) -> dict[str, str]:
    """At the largest k: each arm's exact match on pages and on text."""
    rows = pq.read_table(run / "mask" / "results.parquet").to_pylist()
    k = max(row["heads"] for row in rows if row["group"] == "ocr")
    cells = {}
    for arm in (f"ocr-top{k}", f"retrieval-top{k}", f"random-top{k}-pooled"):
        for dataset in ("eval-image", "eval-text"):
            row = next(r for r in rows if r["condition"] == arm and r["dataset"] == dataset)
            cells[f"{arm} {dataset}"] = interval(row["mean"], row["low"], row["high"])
    return cells


def top_heads(run: Path, kind: str, k: int = 4) -> str:
    """The kind's k best selected heads, to see where the two sets sit and where they part."""
    return " ".join(json.loads((run / f"{kind}_heads.json").read_text())["heads"][:k])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+", metavar="NAME=CHECKPOINT")
    parser.add_argument("--reading-samples", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("runs/variants"))
    args = parser.parse_args()
    table = []
    for variant in args.variants:
        name, checkpoint = variant.split("=", 1)
        run = args.out / name
        run_demo(DemoSettings(out=run, model=Path(checkpoint)), Console(quiet=True))
        similarity = json.loads((run / "analysis.json").read_text())["similarity"]
        table.append({"variant": name, **reading(Path(checkpoint), args.reading_samples),
                      "jaccard": f"{similarity['jaccard']:.2f}", "top-10 overlap": f"{similarity['top_k_overlap']:.1f}",
                      "top-4 ocr": top_heads(run, "ocr"), "top-4 retrieval": top_heads(run, "retrieval"),
                      **masking_cells(run)})  # fmt: skip
    columns = list(table[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join(row[column] for column in columns) + " |")


if __name__ == "__main__":
    main()
