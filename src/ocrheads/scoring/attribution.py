"""How much each head's output matters for an answer, teacher-forced: the change in each answer token's
log-probability (or logit) when the head is ablated (its output, the slice o_proj reads, set to zero or to its mean)
at every position, as `ocrheads mask` does.

- `estimate` with one step: attribution patching (Nanda 2023; Kramár et al. 2024, AtP): one forward pass, then one
  backward pass per answer token (or one for the whole answer), give for all heads at once the first-order term,
  gradient . (ablated - clean) summed over positions.
- `estimate` with K steps: integrated gradients along the ablation path, every head moved at once (as EAP-IG does,
  Hanna et al. 2024): the gradient is averaged at the K points clean + k/K (ablated - clean), k = 0..K-1, and
  multiplied by the clean pass's (ablated - clean). K = 1 is AtP; as K grows the sum follows the metric's curve.
- `exact`: each head ablated in a forward pass of its own, batched over heads (each copy of the batch ablates a
  different head), for every head or for each item's chosen heads (the second stage of a two-stage search).

The outputs and their gradients come from the registered attention function (HeadOutputs); each layer's gradient is
reduced to (batch, heads) as soon as it arrives, so no layer's gradient is kept.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import BatchEncoding

from ocrheads.attention import Edits, HeadOutputs, attention_session
from ocrheads.devices import to_cpu
from ocrheads.heads import ATTENTION, CROSS
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.options import Ablation, Metric
from ocrheads.scoring.passes import append_tokens


@dataclass
class TeacherForced:
    """A batch with each item's answer appended, and where its answer tokens are predicted."""

    inputs: dict
    rows: torch.Tensor  # (batch, A) the row whose logits predict answer token j
    targets: torch.Tensor  # (batch, A) answer token ids (0 where an item's answer is shorter)
    valid: torch.Tensor  # (batch, A) bool


def teacher_forced(batch: BatchEncoding, answers: list[list[int]], types: dict | None = None) -> TeacherForced:
    size, prompt = batch["input_ids"].shape
    longest = max(len(ids) for ids in answers)
    targets = torch.tensor([ids + [0] * (longest - len(ids)) for ids in answers])
    valid = torch.tensor([[True] * len(ids) + [False] * (longest - len(ids)) for ids in answers])
    rows = torch.arange(prompt - 1, prompt - 1 + longest).expand(size, -1)
    return TeacherForced(append_tokens(batch, targets, valid.long(), types), rows, targets, valid)


def answer_metric(logits: torch.Tensor, forced: TeacherForced, metric: Metric) -> torch.Tensor:
    """(batch, A) log-probability (or logit) of each answer token at the row that predicts it; 0 where invalid.

    `logits` may hold only the last rows of the sequence (logits_to_keep), as long as the answer's rows are there."""
    rows = forced.rows.to(logits.device) - (forced.inputs["input_ids"].shape[1] - logits.shape[1])
    picked = logits.gather(1, rows[..., None].expand(-1, -1, logits.shape[-1]))
    picked = picked.to(torch.promote_types(picked.dtype, torch.float32))  # float32 at least; float64 stays
    if metric == "logprob":
        picked = picked.log_softmax(-1)
    values = picked.gather(2, forced.targets.to(logits.device)[..., None]).squeeze(-1)
    return torch.where(forced.valid.to(values.device), values, 0.0)


def _forward_metric(adapter: ModelAdapter, forced: TeacherForced, metric: Metric) -> torch.Tensor:
    """The answer's metric from one forward pass; logits only for the answer's rows (the sequence's last A + 1)."""
    logits = adapter.forward(forced.inputs, logits=forced.targets.shape[1] + 1).logits
    return answer_metric(logits, forced, metric)


def estimate(
    adapter: ModelAdapter,
    forced: TeacherForced,
    ablation: Ablation = "zero",
    means: dict[int, torch.Tensor] | None = None,
    metric: Metric = "logprob",
    per_token: bool = True,
    steps: int = 1,
    layers: list[int] | None = None,
) -> torch.Tensor:
    """(batch, A, layers, heads): estimated change of each answer token's metric when each head of `layers` (default:
    every layer with attention weights) is ablated; with `per_token` False, (batch, 1, layers, heads) for the whole
    answer's metric (one backward pass a step instead of one per answer token). `steps` > 1: integrated gradients
    along the ablation path, a forward and backward pass per step, and every layer's (ablated - clean) kept from the
    first step (the hidden size a token and layer)."""
    layers = adapter.layers_of((ATTENTION, CROSS)) if layers is None else layers
    sums: dict[tuple[int, int], torch.Tensor] = {}  # (token, layer) -> (batch, heads), on the layer's device
    directions: dict[int, torch.Tensor] = {}  # layer -> the clean pass's ablated - clean, when steps > 1
    current: dict[str, int] = {}  # the answer token whose backward pass is running

    def reduce(layer: int, output: torch.Tensor, gradient: torch.Tensor) -> None:
        direction = directions.get(layer)
        if direction is None:  # the first step is the clean pass
            direction = _direction(output, ablation, means, layer)
            if steps > 1:
                directions[layer] = direction
        key = (current["token"], layer)
        found = (gradient.float() * direction).sum((1, 3))
        sums[key] = sums[key] + found if key in sums else found

    toward = means if ablation == "mean" else None
    with torch.enable_grad(), _frozen(adapter.model):
        for step in range(steps):
            request = HeadOutputs(reduce, along=step / steps, toward=toward)
            with attention_session(adapter.model, head_outputs=request) as session:
                values = _forward_metric(adapter, forced, metric)
                if not per_token:
                    values = values.sum(1, keepdim=True)
                anchors = [session.head_outputs[layer].anchor for layer in layers if layer in session.head_outputs]
                for token in range(values.shape[1]):
                    current["token"] = token
                    torch.autograd.grad(values[:, token].sum(), anchors, retain_graph=token < values.shape[1] - 1)
    unchanged = torch.zeros(values.shape[0], adapter.grid[1])  # a layer the pass skips (cross-attention, no image)
    found = torch.stack(
        [torch.stack([to_cpu(sums.get((token, layer), unchanged)) for layer in layers], 1)
         for token in range(values.shape[1])], 1,
    )  # fmt: skip
    return found / steps  # 0 past an item's answer: its metric is a constant 0 there


@contextmanager
def _frozen(model: torch.nn.Module):
    """No weight needs a gradient while estimating: the graph then starts at the first head outputs (the vision
    tower and embeddings build none), and no weight gradient is computed."""
    wanted = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in wanted:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in wanted:
            parameter.requires_grad_(True)


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
    chosen: torch.Tensor | None = None,
    layers: list[int] | None = None,
) -> torch.Tensor:
    """(batch, A, layers, heads): each answer token's metric with each head of `layers` (default: every layer with
    attention weights) ablated, minus the clean metric.

    `chosen` (batch, N): only these heads of each item (flat indices, index in `layers` * heads + head), NaN for the
    others; default every head. Each pass holds `heads_per_pass` copies of the batch (default: a layer's heads),
    copy i ablating each item's i-th head of the pass."""
    layers = adapter.layers_of((ATTENTION, CROSS)) if layers is None else layers
    heads = adapter.grid[1]
    size = forced.targets.shape[0]
    chosen = torch.arange(len(layers) * heads).expand(size, -1) if chosen is None else chosen.cpu()
    per_pass = heads_per_pass or heads
    with torch.no_grad():
        with attention_session(adapter.model):
            clean = _forward_metric(adapter, forced, metric)
        found = torch.full((*clean.shape, len(layers), heads), torch.nan)
        for first in range(0, chosen.shape[1], per_pass):
            block = [divmod(int(flat), heads) for flat in chosen[:, first : first + per_pass].T.flatten()]
            copies = len(block) // size
            masks: dict[int, torch.Tensor] = {}
            for row, (index, head) in enumerate(block):  # row = copy * size + item
                masks.setdefault(layers[index], torch.zeros(len(block), heads, dtype=torch.bool))[row, head] = True
            # a layer without means never ran on these prompts (cross-attention, no image): its ablation changes nothing
            mean_of = means.get if ablation == "mean" else lambda layer: None
            per_item = {layer: (mask, mean_of(layer)) for layer, mask in masks.items()}
            with attention_session(adapter.model, edits=Edits(per_item=per_item)):
                ablated = _forward_metric(adapter, _repeat(adapter, forced, copies), metric).view(copies * size, -1)
            change = (ablated - clean.repeat(copies, 1)).cpu()
            for row, (index, head) in enumerate(block):
                found[row % size, :, index, head] = change[row]
    return torch.where(forced.valid[..., None, None], found, 0.0)


def _repeat(adapter: ModelAdapter, forced: TeacherForced, copies: int) -> TeacherForced:
    """The batch `copies` times over, copy-major (per-image tensors such as pixel values follow their items)."""
    inputs = adapter.repeated(forced.inputs, copies)
    return TeacherForced(inputs, forced.rows.repeat(copies, 1), forced.targets.repeat(copies, 1),
                         forced.valid.repeat(copies, 1))  # fmt: skip


def largest_drops(estimates: torch.Tensor, count: int) -> torch.Tensor:
    """(batch, count) flat indices of each item's heads with the largest estimated drop of the whole answer's
    metric, from (batch, A, layers, heads) estimates: the heads a two-stage search measures exactly."""
    drops = -estimates.sum(1).flatten(1)
    return drops.topk(min(count, drops.shape[1]), dim=1).indices
