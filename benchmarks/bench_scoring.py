"""OCR scoring throughput: ours (`score_ocr_batch`: capture rides on SDPA generate) against the paper's method
(generate with eager attention and `output_attentions=True`, then per-head argmax over every step's matrices).

The mid-sized random Qwen2-VL of mid_model.py reads one passkey sample of N haystack characters, rendered on
pages at their natural size (about 190 image tokens per page), and writes 8 tokens. Both methods encode the
same sample, generate the same tokens greedily and find, per written token, layer and head, whether the argmax
key is an evidence token. Each (method, length) runs in its own process: peak memory is that run's alone.
The vision tower (the same work in both, eager in the paper's) is also timed on its own, to show the part of
the gap that is the scoring method's.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_scoring.py [--lengths 8192 16384 32768]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch
from isolated import run_isolated
from mid_model import mid_qwen2_vl

NEW_TOKENS = 8


def paper_method(adapter, sample, pages, options) -> torch.Tensor:
    """Generate with output_attentions, then per written token: is each head's argmax key an evidence token?"""
    from ocrheads.scoring.evidence import answer_units, evidence

    batch = adapter.encode([adapter.prompt(sample.question, len(pages))], [pages])
    images = adapter.image_tokens(batch, [[page.size for page in pages]])[0]
    found = evidence(answer_units(sample, options), images, options)
    evidence_keys = torch.zeros(batch["input_ids"].shape[1] + NEW_TOKENS, dtype=torch.bool)
    evidence_keys[sorted({p for atom in found.positions for p in atom})] = True
    out = adapter.model.generate(
        **batch, max_new_tokens=NEW_TOKENS, do_sample=False, output_attentions=True, return_dict_in_generate=True
    )
    hits = []
    for step in out.attentions:  # one tuple of per-layer (1, heads, queries, keys) matrices per written token
        argmax = torch.stack([layer[0, :, -1].argmax(-1) for layer in step])
        hits.append(evidence_keys[argmax])
    return torch.stack(hits)


def worker(method: str, length: int) -> dict:
    torch.set_num_threads(1)
    from ocrheads.attention import install
    from ocrheads.data.generate import generate
    from ocrheads.data.manifest import open_page
    from ocrheads.models import adapter_class
    from ocrheads.scoring.kinds import OCR
    from ocrheads.scoring.ocr import score_ocr_batch
    from ocrheads.scoring.options import scoring_options

    model, processor = mid_qwen2_vl(56 * 56, 4096 * 28 * 28)
    adapter = adapter_class(model.config)(model, processor)
    model.generation_config.min_new_tokens = NEW_TOKENS  # both methods write exactly NEW_TOKENS tokens
    folder = Path(tempfile.mkdtemp()) / "data"
    [sample] = generate("passkey", folder, n=1, lengths=(length,), seed=0, progress=False)
    pages = [open_page(folder, sample, k) for k in range(len(sample.pages))]
    options = scoring_options("default", max_new_tokens=NEW_TOKENS)
    if method == "paper":
        model.set_attn_implementation("eager")
    else:
        install(model)
    batch = adapter.encode([adapter.prompt(sample.question, len(pages))], [pages])
    with torch.no_grad():
        start = time.perf_counter()
        model.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
        vision = time.perf_counter() - start
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.no_grad():
        if method == "paper":
            paper_method(adapter, sample, pages, options)
        else:
            score_ocr_batch(adapter, [sample], [pages], options, OCR.table_for(adapter))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tokens = batch["input_ids"].shape[1]
    return {"method": method, "chars": length, "tokens": tokens, "pages": len(pages), "seconds": seconds,
            "vision_seconds": vision, "peak_mib": (peak - baseline) / 1024}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384, 32768], help="haystack characters")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "LENGTH"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]))))
        return
    results = {}
    for length in args.lengths:
        for method in ("ours", "paper"):
            results[method, length] = run_isolated(__file__, method, length)
    print(
        "| haystack chars | pages | tokens | ours | paper's method | time ratio "
        "| time ratio without the vision tower | peak memory ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for length in args.lengths:
        ours, paper = results["ours", length], results["paper", length]
        cells = [f"{r['seconds']:.1f} s / {r['peak_mib']:.0f} MiB" for r in (ours, paper)]
        time_ratio = paper["seconds"] / ours["seconds"]
        text_ratio = (paper["seconds"] - paper["vision_seconds"]) / (ours["seconds"] - ours["vision_seconds"])
        memory_ratio = paper["peak_mib"] / max(ours["peak_mib"], 1)
        ratios = [f"{time_ratio:.1f}x", f"{text_ratio:.1f}x", f"{memory_ratio:.0f}x"]
        row = [length, ours["pages"], ours["tokens"], *cells, *ratios]
        print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
