"""Precision of captured attention in half precision: ours (the registered function, float64 rows) against the
paper's method (eager attention with `output_attentions=True`), on the bundled demo model and the mid-sized model.

Each method's rows are compared with a float64 softmax of the very queries, keys and mask of its own forward pass
(eager's are recorded inside transformers' eager attention function): max |error| and the share of (head, row)
pairs whose argmax key moves. Then what that does to the OCR scores: each head's score (share of answer rows whose
argmax key is an evidence token of the character written) in each dtype, ranked against the same method's
float32 ranking (top-10 overlap and Spearman). Teacher-forced gold answers, left-padded batches of two.

Run: OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_precision.py [--samples 24]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers.models.qwen2_vl.modeling_qwen2_vl as qwen2_vl
from mid_model import mid_qwen2_vl
from PIL import Image
from scipy.stats import spearmanr

from ocrheads.attention import Capture, attention_session, install, use_text_attention
from ocrheads.data.generate import generate
from ocrheads.demo.settings import BUNDLED_MODEL
from ocrheads.demo.task import DemoTask
from ocrheads.models import adapter_class, load_adapter
from ocrheads.scoring.answers import encode_samples, gold_ids
from ocrheads.scoring.evidence import answer_units, evidence
from ocrheads.scoring.options import scoring_options
from ocrheads.scoring.passes import append_tokens
from ocrheads.verify import float64_rows

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _reference(query, key, mask, scaling, rows):
    """float64 probabilities of query rows `rows` (batch, R) from one prefill call's tensors."""
    from ocrheads.attention import AttentionInputs

    picked = query.gather(2, rows[:, None, :, None].expand(-1, query.shape[1], -1, query.shape[-1]))
    mask_rows = None
    if mask is not None:
        mask = mask[..., : key.shape[2]].expand(query.shape[0], -1, -1, -1)
        mask_rows = mask.gather(2, rows[:, None, :, None].expand(-1, 1, -1, key.shape[2]))
    columns = torch.arange(rows.shape[1])
    return float64_rows(AttentionInputs(picked, key, mask_rows, rows, columns, query.shape[2], scaling))


def _eager(model, sequence, rows):
    """Eager rows (as output_attentions returns them) and float64 rows of the same calls, per layer."""
    recorded = {}
    original = qwen2_vl.eager_attention_forward

    def recording(module, query, key, value, attention_mask, scaling, **kwargs):
        output, weights = original(module, query, key, value, attention_mask, scaling, **kwargs)
        if hasattr(module, "layer_idx"):
            recorded[module.layer_idx] = _reference(query, key, attention_mask, scaling, rows)
        return output, weights

    qwen2_vl.eager_attention_forward = recording
    try:
        with torch.no_grad():
            attentions = use_text_attention(model, "eager")(**sequence, output_attentions=True).attentions
    finally:
        qwen2_vl.eager_attention_forward = original
        install(model)
    index = rows[:, None, :, None].expand(-1, attentions[0].shape[1], -1, attentions[0].shape[-1])
    return {layer: (a.gather(2, index).double(), recorded[layer]) for layer, a in enumerate(attentions)}


def _ours(model, sequence, rows):
    with torch.no_grad(), attention_session(model, capture=Capture(rows, keep_probs=True, keep_inputs=True)) as s:
        model(**sequence)
    found = {}
    for layer in s.layers:
        [inputs] = s.inputs(layer)
        found[layer] = (s.captured(layer).probs[:, :, inputs.columns].double(), float64_rows(inputs))
    return found


def measure(adapter, data: Path, samples, dtype) -> dict:
    """Per method: max error, argmax flips, pairs, and per-head OCR scores (layers x heads); the float32 model is
    copied, so every dtype is cast from the same float32 weights."""
    adapter = type(adapter)(install(copy.deepcopy(adapter.model).to(dtype)), adapter.processor)
    options = scoring_options()
    layers, heads = adapter.grid
    found = {m: {"error": 0.0, "flips": 0, "pairs": 0, "hits": np.zeros((layers, heads)), "n": 0} for m in METHODS}
    for first in range(0, len(samples), 2):
        batch_samples = samples[first : first + 2]
        pages = [[Image.open(data / p).convert("RGB") for p in s.pages] for s in batch_samples]
        batch = encode_samples(adapter, batch_samples, pages)
        answers = gold_ids(adapter, batch_samples)
        assert all(len(ids) == len(s.answer) for ids, s in zip(answers, batch_samples, strict=True)), (
            "one token per digit"
        )
        tokens = torch.tensor(answers)
        sequence = append_tokens(batch, tokens, torch.ones_like(tokens), adapter.written_token_types)
        prompt = batch["input_ids"].shape[1]
        rows = torch.arange(prompt - 1, prompt - 1 + tokens.shape[1]).expand(len(batch_samples), -1)
        images = adapter.image_tokens(batch, [[page.size for page in item] for item in pages])
        for method, run in METHODS.items():
            record = found[method]
            for layer, (probs, reference) in run(adapter.model, sequence, rows).items():
                record["error"] = max(record["error"], float((probs - reference).abs().max()))
                argmax = probs.argmax(-1)
                record["flips"] += int((argmax != reference.argmax(-1)).sum())
                record["pairs"] += argmax.numel()
                for item, sample in enumerate(batch_samples):
                    units = answer_units(sample, options)
                    seen = evidence(units, images[item], options)
                    for digit in range(len(sample.answer)):
                        hit = seen.hits(argmax[item, :, digit], (digit,), int(sequence["input_ids"].shape[1]))
                        record["hits"][layer] += hit.numpy()
            record["n"] += sum(len(s.answer) for s in batch_samples)
    return found


METHODS = {"ocrheads capture": _ours, "eager output_attentions (paper)": _eager}


def _ranking(scores: np.ndarray, baseline: np.ndarray) -> tuple[str, str]:
    top = lambda values: set(np.argsort(-values.flatten(), kind="stable")[:10].tolist())  # noqa: E731
    overlap = len(top(scores) & top(baseline))
    if np.ptp(scores) == 0 or np.ptp(baseline) == 0:
        return f"{overlap}/10", "-"
    return f"{overlap}/10", f"{spearmanr(scores.flatten(), baseline.flatten()).statistic:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as scratch:
        task = DemoTask()
        demo_data, mid_data = Path(scratch) / "demo", Path(scratch) / "mid"
        options = dict(lengths=(task.context_length,), digits=task.digits, intro=task.intro, style=task.style(0))
        demo_samples = generate("passkey", demo_data, n=args.samples, seed=77, fonts=task.fonts, **options)
        mid_samples = generate("passkey", mid_data, n=args.samples, seed=77, lengths=(400,), digits=5)
        demo = load_adapter(BUNDLED_MODEL)
        model, processor = mid_qwen2_vl(256 * 28 * 28, 256 * 28 * 28)
        mid = adapter_class(model.config)(model, processor)
        print(
            "| model | dtype | method | max error vs float64 | argmax moved | top-10 vs float32 | Spearman vs float32 |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, adapter, data, samples in (("demo", demo, demo_data, demo_samples),
                                             ("mid-sized", mid, mid_data, mid_samples)):  # fmt: skip
            results = {dtype: measure(adapter, data, samples, dtype) for dtype in DTYPES}
            for dtype in DTYPES:
                for method, record in results[dtype].items():
                    scores = record["hits"] / record["n"]
                    baseline = results[torch.float32][method]["hits"] / results[torch.float32][method]["n"]
                    overlap, rho = _ranking(scores, baseline)
                    share = f"{record['flips'] / record['pairs']:.2%}"
                    print(f"| {name} | {str(dtype).removeprefix('torch.')} | {method} | {record['error']:.1e} | "
                          f"{share} | {overlap} | {rho} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
