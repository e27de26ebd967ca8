"""Causal head scores: how much each head's output matters for writing the answer.

For every answer token and every head, the change in the token's log-probability (or logit) when the head is
ablated (its output, the slice o_proj reads, set to zero or to its mean), teacher-forced on the answer:
- `estimate`: attribution patching (Nanda 2023; Kramár et al. 2024, AtP): one forward pass, then one backward pass
  per answer token, give for all heads at once the first-order term, gradient . (ablated - clean) summed over
  positions. The outputs and their gradients come from the registered attention function (HeadOutputs).
- `exact`: each head ablated in a forward pass of its own, batched over heads (each copy of the batch ablates a
  different head).
Ablation acts at every position, as `ocrheads mask` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from transformers import BatchEncoding

from ocrheads.attention import Edits, HeadOutputs, attention_session
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.passes import append_tokens

Ablation = Literal["zero", "mean"]
Metric = Literal["logprob", "logit"]


@dataclass
class TeacherForced:
    """A batch with each item's answer appended, and where its answer tokens are predicted."""

    inputs: dict
    rows: torch.Tensor  # (batch, A) the row whose logits predict answer token j
    targets: torch.Tensor  # (batch, A) answer token ids (0 where an item's answer is shorter)
    valid: torch.Tensor  # (batch, A) bool


def teacher_forced(batch: BatchEncoding, answers: list[list[int]]) -> TeacherForced:
    size, prompt = batch["input_ids"].shape
    longest = max(len(ids) for ids in answers)
    targets = torch.tensor([ids + [0] * (longest - len(ids)) for ids in answers])
    valid = torch.tensor([[True] * len(ids) + [False] * (longest - len(ids)) for ids in answers])
    rows = torch.arange(prompt - 1, prompt - 1 + longest).expand(size, -1)
    return TeacherForced(append_tokens(batch, targets, valid.long()), rows, targets, valid)


def answer_metric(logits: torch.Tensor, forced: TeacherForced, metric: Metric) -> torch.Tensor:
    """(batch, A) log-probability (or logit) of each answer token at the row that predicts it; 0 where invalid."""
    rows = forced.rows.to(logits.device)
    picked = logits.gather(1, rows[..., None].expand(-1, -1, logits.shape[-1]))
    picked = picked.to(torch.promote_types(picked.dtype, torch.float32))  # float32 at least; float64 stays
    if metric == "logprob":
        picked = picked.log_softmax(-1)
    values = picked.gather(2, forced.targets.to(logits.device)[..., None]).squeeze(-1)
    return torch.where(forced.valid.to(values.device), values, 0.0)


def _forward_metric(adapter: ModelAdapter, forced: TeacherForced, metric: Metric) -> torch.Tensor:
    return answer_metric(adapter.model(**forced.inputs).logits, forced, metric)


def estimate(
    adapter: ModelAdapter,
    forced: TeacherForced,
    ablation: Ablation = "zero",
    means: dict[int, torch.Tensor] | None = None,
    metric: Metric = "logprob",
) -> torch.Tensor:
    """(batch, A, layers, heads): first-order change of each answer token's metric when each head is ablated."""
    layers, heads = adapter.grid
    with torch.enable_grad(), attention_session(adapter.model, head_outputs=HeadOutputs()) as session:
        values = _forward_metric(adapter, forced, metric)
        kept = [session.head_outputs[layer] for layer in range(layers)]
        directions = [_direction(output.clean, ablation, means, layer) for layer, output in enumerate(kept)]
        found = torch.zeros(*values.shape, layers, heads)
        for token in range(values.shape[1]):
            grads = torch.autograd.grad(values[:, token].sum(), [output.delta for output in kept],
                                        retain_graph=token < values.shape[1] - 1)  # fmt: skip
            for layer, (grad, direction) in enumerate(zip(grads, directions, strict=True)):
                found[:, token, layer] = (grad.float() * direction).sum((1, 3)).cpu()
    return found * forced.valid[..., None, None]


def _direction(clean: torch.Tensor, ablation: Ablation, means: dict[int, torch.Tensor] | None, layer: int):
    """ablated - clean for every position and head, (batch, Q, heads, head_dim) in float32."""
    if ablation == "zero":
        return -clean.float()
    return means[layer].to(clean.device).float()[None, None] - clean.float()


def exact(
    adapter: ModelAdapter,
    forced: TeacherForced,
    ablation: Ablation = "zero",
    means: dict[int, torch.Tensor] | None = None,
    metric: Metric = "logprob",
    heads_per_pass: int | None = None,
) -> torch.Tensor:
    """(batch, A, layers, heads): each answer token's metric with each head ablated, minus the clean metric.

    Each pass holds `heads_per_pass` copies of the batch (default: all heads of a layer), copy i ablating head i."""
    layers, heads = adapter.grid
    size = forced.targets.shape[0]
    heads_per_pass = heads_per_pass or heads
    with torch.no_grad():
        with attention_session(adapter.model):
            clean = _forward_metric(adapter, forced, metric)
        found = torch.zeros(*clean.shape, layers, heads)
        for layer in range(layers):
            for first in range(0, heads, heads_per_pass):
                chosen = list(range(first, min(first + heads_per_pass, heads)))
                copies = _repeat(forced, len(chosen))
                mask = torch.zeros(len(chosen) * size, heads, dtype=torch.bool)
                for copy, head in enumerate(chosen):
                    mask[copy * size : (copy + 1) * size, head] = True
                mean = means[layer] if ablation == "mean" else None
                with attention_session(adapter.model, edits=Edits(per_item={layer: (mask, mean)})):
                    ablated = _forward_metric(adapter, copies, metric).view(len(chosen), size, -1)
                found[:, :, layer, first : first + len(chosen)] = (ablated - clean[None]).permute(1, 2, 0).cpu()
    return found * forced.valid[..., None, None]


def _repeat(forced: TeacherForced, copies: int) -> TeacherForced:
    """The batch `copies` times over, copy-major (per-image tensors such as pixel values follow their items)."""
    inputs = {name: torch.cat([v] * copies) if isinstance(v, torch.Tensor) else v for name, v in forced.inputs.items()}
    return TeacherForced(inputs, forced.rows.repeat(copies, 1), forced.targets.repeat(copies, 1),
                         forced.valid.repeat(copies, 1))  # fmt: skip
