"""Capture cost on the layer kinds of this year's VLMs: hybrid linear/softmax attention, image cross-attention,
shared keys and values, mixture-of-experts MLPs.

Per model: a plain forward (the model's own SDPA) against the same forward capturing 16 answer rows in every layer
OCR scores look in (argmax key and mass on 16 key sets, what OCR scoring needs: the cross-attention layers over the
image's keys for Llama 3.2 Vision), interleaved, median of the repeats. The tiny checkpoints of the test suite read
one page; the layer slices are transformers' config defaults for Qwen/Qwen3.5-27B and google/gemma-4-e2b-it (as
their config classes document them, not checked against the hub) cut to a few layers and a 32k vocabulary, text
only: the capture works in the text layers alone.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_layer_kinds.py [--repeats 3] [--length 1024]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

ROWS, KEY_SETS = 16, 16
TINY = ("qwen3_5", "qwen3_5_moe", "gemma4", "gemma4_moe", "mllama", "qwen3_vl_moe", "glm4v_moe", "qwen2_vl")
SLICES = ("qwen3_5-27b, 4 layers", "gemma-4-e2b, 6 layers")


def _slice(name: str):
    """A published shape cut to a few layers (the vision tower kept tiny: the benchmark feeds text)."""
    import transformers as tf

    if name.startswith("qwen3_5"):
        text = dict(num_hidden_layers=4, vocab_size=32000)  # linear, linear, linear, full: the published pattern
        vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=4096)
        return tf.Qwen3_5ForConditionalGeneration(tf.Qwen3_5Config(text_config=text, vision_config=vision))
    layers = ["sliding_attention", "sliding_attention", "full_attention"] * 2
    text = dict(num_hidden_layers=6, layer_types=layers, num_kv_shared_layers=2, vocab_size=32000,
                vocab_size_per_layer_input=32000)  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=16)  # fmt: skip
    return tf.Gemma4ForConditionalGeneration(tf.Gemma4Config(text_config=text, vision_config=vision, audio_config=None))


def _inputs(name: str, length: int):
    """The model, one batch (a page and a question for a tiny checkpoint, `length` text tokens for a slice) and how
    many keys its OCR key sets span (the image's keys where it enters through cross-attention)."""
    if name in SLICES:
        model = _slice(name).eval()
        generator = torch.Generator().manual_seed(0)
        return model, {"input_ids": torch.randint(100, 30000, (1, length), generator=generator)}, length
    from PIL import Image

    from ocrheads.models import adapter_class
    from ocrheads.testing.tiny import build_tiny

    tiny = build_tiny(name)
    adapter = adapter_class(tiny.model.config)(tiny.model, tiny.processor)
    page = Image.new("RGB", (240, 168), "white")
    batch = adapter.encode([adapter.prompt("What is the pass key? " * 8, 1)], [[page]])
    return tiny.model, dict(batch), adapter.image_key_length(batch)


def worker(name: str, length: int, repeats: int) -> dict:
    from ocrheads.attention import Capture, attention_session, install, last_logits, use_text_attention
    from ocrheads.heads import layer_kinds_of
    from ocrheads.scoring.kinds import OCR

    torch.manual_seed(0)
    model, batch, keys = _inputs(name, length)
    tokens = batch["input_ids"].shape[1]
    rows = torch.arange(tokens - ROWS, tokens)[None]
    kinds = layer_kinds_of(model.config)
    key_sets = torch.zeros(1, KEY_SETS, keys, dtype=torch.bool)
    key_sets[0, torch.arange(KEY_SETS), torch.arange(KEY_SETS) + 1] = True
    capture = Capture(rows, key_sets=key_sets, layers=frozenset(OCR.scored_layers(kinds)))

    def plain():
        model(**batch, use_cache=False, logits_to_keep=last_logits())

    def captured():
        with attention_session(model, capture=capture) as session:
            model(**batch, use_cache=False, logits_to_keep=last_logits())
        return [session.captured(layer) for layer in session.layers]

    times = {"plain": [], "capture": []}
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first round warms up
            for method, run in (("plain", plain), ("capture", captured)):
                (use_text_attention(model, "sdpa") if method == "plain" else install(model))
                start = time.perf_counter()
                run()
                times[method].append(time.perf_counter() - start)
    medians = {method: statistics.median(found[1:]) for method, found in times.items()}
    counts = {kind: kinds.count(kind) for kind in sorted(set(kinds))}
    return {"model": name, "tokens": tokens, "layers": counts, **medians}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        torch.set_num_threads(2 if args.worker in SLICES else 1)
        print(json.dumps(worker(args.worker, args.length, args.repeats)))
        return
    print("| model | tokens | layers by kind | plain forward | capturing | capture / plain |")
    print("|---|---|---|---|---|---|")
    for name in (*TINY, *SLICES):
        command = [sys.executable, __file__, "--worker", name, "--repeats", str(args.repeats), "--length",
                   str(args.length)]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr)
        cell = json.loads(out.stdout.strip().splitlines()[-1])
        layers = ", ".join(f"{count} {kind}" for kind, count in cell["layers"].items())
        print(f"| {name} | {cell['tokens']} | {layers} | {cell['plain'] * 1000:.1f} ms | "
              f"{cell['capture'] * 1000:.1f} ms | {cell['capture'] / cell['plain']:.2f}x |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
