"""Reference means for mean ablation: each head's average output over a set's prompts.

A mean-ablated head keeps saying what it says on average, so only the sample-specific part of its output is
removed (zeroing also removes that constant, which can move the residual stream off its usual range).
Means are taken over every non-padding prompt token of the set's first samples, with the direct prompt.
"""

from __future__ import annotations

import torch

from ocrheads.attention import OutputSums, attention_session
from ocrheads.devices import to_cpu
from ocrheads.errors import OcrHeadsError
from ocrheads.eval.datasets import EvalSet
from ocrheads.eval.prompts import encode_questions
from ocrheads.models.base import ModelAdapter


def reference_means(adapter: ModelAdapter, eval_set: EvalSet, samples: int, batch_size: int) -> dict[int, torch.Tensor]:
    """layer -> (heads, head_dim) mean output over the prompt tokens of the first `samples` runnable samples."""
    picked = [s for s in eval_set.samples(range(min(samples, eval_set.size))) if not s.skip]
    if not picked:
        raise OcrHeadsError(
            f"dataset {eval_set.name}: none of its first {samples} samples can run, so there is nothing to take "
            "head means over; raise --mean-samples or check the set"
        )
    batches = (
        encode_questions(adapter, picked[first : first + batch_size], "direct", eval_set.instruction)
        for first in range(0, len(picked), batch_size)
    )
    return prompt_means(adapter, batches)


def prompt_means(adapter: ModelAdapter, batches) -> dict[int, torch.Tensor]:
    """layer -> (heads, head_dim) mean output over every non-padding prompt token of the encoded `batches`."""
    totals: dict[int, torch.Tensor] = {}
    tokens = 0
    for batch in batches:
        request = OutputSums(batch["attention_mask"].bool())
        with torch.no_grad(), attention_session(adapter.model, output_sums=request) as session:
            adapter.forward(batch)
        for layer, sums in session.sums.items():
            totals[layer] = totals[layer] + sums if layer in totals else sums
        tokens += int(session.summed_tokens)  # read once, after the pass
    return {layer: to_cpu(total / tokens) for layer, total in totals.items()}  # each layer's sums are on its GPU
