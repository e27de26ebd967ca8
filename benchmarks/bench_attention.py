"""Capture cost: plain SDPA forward vs the same forward with row capture vs eager `output_attentions=True`.

The mid-sized random Qwen2-VL of mid_model.py, one page image (256 image tokens) plus text up to N tokens.
Capture records 16 answer rows in every layer, reduced to argmax keys and the mass on 16 evidence key sets,
which is what OCR scoring needs.
Each (method, length) runs in its own process, so peak memory is that run's alone.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_attention.py [--lengths 2048 4096 8192 16384]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
from isolated import run_isolated
from mid_model import mid_qwen2_vl

EAGER_LIMIT = 8192  # eager output_attentions at 16k would return ~24 GiB of attention: more than this machine has
ROWS, KEY_SETS, REPEATS = 16, 16, 3


def build(length: int):
    from PIL import Image

    pixels = 256 * 28 * 28
    model, processor = mid_qwen2_vl(pixels, pixels)
    prompt = "<|vision_start|><|image_pad|><|vision_end|>"
    probe = processor(text=[prompt], images=[Image.new("RGB", (448, 448), "white")], return_tensors="pt")
    filler = "x" * (length - probe["input_ids"].shape[1])
    batch = processor(text=[prompt + filler], images=[Image.new("RGB", (448, 448), "white")], return_tensors="pt")
    assert batch["input_ids"].shape[1] == length, batch["input_ids"].shape
    return model, dict(batch)


def worker(method: str, length: int) -> dict:
    torch.set_num_threads(1)
    from ocrheads.attention import Capture, attention_session, install

    model, batch = build(length)
    rows = torch.arange(length - ROWS, length)[None]
    key_sets = torch.zeros(1, KEY_SETS, length, dtype=torch.bool)
    key_sets[0, torch.arange(KEY_SETS), torch.arange(KEY_SETS) + 10] = True
    if method == "eager":
        model.set_attn_implementation("eager")
    elif method == "capture":
        install(model)

    def run():
        with torch.no_grad():
            if method == "eager":
                return model(**batch, output_attentions=True).attentions
            if method == "capture":
                with attention_session(model, capture=Capture(rows, key_sets=key_sets)) as session:
                    model(**batch, logits_to_keep=1)
                return [session.captured(layer) for layer in session.layers]
            return model(**batch, logits_to_keep=1)

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
        del result
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = statistics.median(times)
    return {"method": method, "length": length, "seconds": seconds, "peak_mib": (peak - baseline) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "LENGTH"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    results = {}
    for length in args.lengths:
        for method in ("sdpa", "capture", "eager"):
            if method == "eager" and length > EAGER_LIMIT:
                continue
            results[method, length] = run_isolated(__file__, method, length)
    print(
        "| tokens | SDPA | capture | eager + output_attentions "
        "| capture / SDPA time | eager / capture time | eager / capture peak memory |"
    )
    print("|---|---|---|---|---|---|---|")
    for length in args.lengths:
        sdpa, capture = results["sdpa", length], results["capture", length]
        eager = results.get(("eager", length))
        cells = [f"{r['seconds']:.2f} s / {r['peak_mib']:.0f} MiB" for r in (sdpa, capture)]
        cells.append(f"{eager['seconds']:.2f} s / {eager['peak_mib']:.0f} MiB" if eager else "not run (memory)")
        ratio = f"{capture['seconds'] / sdpa['seconds']:.2f}x"
        if eager:
            speed = f"{eager['seconds'] / capture['seconds']:.1f}x"
            memory = f"{eager['peak_mib'] / max(capture['peak_mib'], 1):.0f}x"
        else:
            speed = memory = "-"
        print(f"| {length} | {' | '.join(cells)} | {ratio} | {speed} | {memory} |")


if __name__ == "__main__":
    main()
