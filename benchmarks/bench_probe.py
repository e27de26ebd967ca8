"""What the geometry probe costs next to scoring: per page size, the processor trace (eight pages through the
processor) and the tower trace (coded gradients where no element feeds two rows, else a forward pass per band of the
page and a gradient per group of rows whose bands do not meet; ocrheads.probe.tower_trace), against one OCR score of
a one-page passkey sample at that size (generate 8 tokens capturing the answer rows), on the mid-sized random
Qwen2-VL of mid_model.py (vision 4 x 192, text 6 x 384) and the tiny Aya Vision and GOT-OCR2 of the suite (no
hand-written adapter; GOT-OCR2's SAM attends by hand, and its convolutions give each patch to several tokens). A
probe runs once per page size and loaded model; every later page of that size reuses it.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_probe.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from mid_model import mid_qwen2_vl

from ocrheads.attention import install
from ocrheads.data.generate import generate
from ocrheads.data.manifest import open_pages
from ocrheads.models import adapter_class
from ocrheads.probe.geometry import compose
from ocrheads.probe.processor_trace import coded_pages, trace_processor
from ocrheads.probe.tower_trace import flat_pixels, trace_tower
from ocrheads.scoring.kind import Batch
from ocrheads.scoring.kinds import scoring_kind
from ocrheads.scoring.options import ScoringOptions
from ocrheads.testing.tiny import build_tiny


def _timed(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _models():
    model, processor = mid_qwen2_vl(256 * 28 * 28, 1024 * 28 * 28)
    yield "mid-sized Qwen2-VL", adapter_class(model.config)(model, processor)
    for family, name in (("aya_vision", "Aya Vision"), ("got_ocr2", "GOT-OCR2")):
        tiny = build_tiny(family)
        yield f"tiny {name} (generic)", adapter_class(tiny.model.config)(tiny.model, tiny.processor)


def _row(name: str, adapter, sample, page, repeats: int) -> str:
    """One model's table row: the two traces and one OCR score of the sample, each the median of `repeats`."""
    install(adapter.model)
    prompt, size = adapter.prompt("", 1), page[0].size
    batch = adapter.encode([prompt], [[coded_pages(size, 0)[0]]])

    def process(image):
        return flat_pixels(adapter.processed(prompt, [image]))

    processor = _timed(lambda: trace_processor(process, size), repeats)
    sources = trace_processor(process, size)
    tower = _timed(lambda: trace_tower(adapter, batch, sources), repeats)
    tokens = compose(trace_tower(adapter, batch, sources), sources, size).tokens
    kind, options = scoring_kind("ocr"), ScoringOptions(max_new_tokens=8)

    def score_one():
        with torch.no_grad():
            kind.score_batch(adapter, Batch([sample], [page]), options, kind.table_for(adapter))

    scoring = _timed(score_one, repeats)
    return (f"| {name} | {size[0]}x{size[1]} | {tokens} | {processor:.2f} s | {tower:.2f} s | {scoring:.2f} s | "
            f"{(processor + tower) / scoring:.1f}x |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| model | page | image tokens | processor trace | tower trace | one OCR score | probe / score |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        [sample] = generate("passkey", data, n=1, lengths=(400,), digits=5, seed=0, progress=False)
        page = open_pages(data, sample)
        for name, adapter in _models():
            print(_row(name, adapter, sample, page, args.repeats), flush=True)


if __name__ == "__main__":
    main()
