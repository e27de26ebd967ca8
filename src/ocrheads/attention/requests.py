"""What a forward pass should capture from, or change in, the text model's attention heads.

Requests are plain data. The registered attention function (function.py) reads them from the active session
(session.py); nothing else touches attention.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

HeadMap = dict[int, tuple[int, ...]]  # layer -> query-head indices


def last_logits(count: int = 1) -> slice:
    """`logits_to_keep` for the last `count` positions' logits, as a slice: given the int, Gemma 4 computes only those
    rows in its key-sharing layers, and rows a capture asks for (or output sums count) would be missing there."""
    return slice(-count, None)


def kept_logits(model: torch.nn.Module, count: int = 1) -> dict:
    """Forward arguments for the last `count` rows' logits only, for a model whose forward takes `logits_to_keep`
    (MiniCPM-V 4.6's does not, and computes every row's)."""
    takes = "logits_to_keep" in inspect.signature(model.forward).parameters
    return {"logits_to_keep": last_logits(count)} if takes else {}


@dataclass(frozen=True)
class Capture:
    """Record per-head attention for chosen query rows, without ever building a heads x T x T tensor.

    rows: (batch, R) absolute positions in the padded sequence (the key index of the query token); -1 pads a
        batch item that has fewer rows. A row is captured by whichever forward call computes it: the prefill,
        or the decoding step that processes that position.
    key_sets: optional (batch, S, T) boolean masks over absolute key positions (over the image's keys in image
        cross-attention layers: capture those layers alone with such sets); the attention mass each head
        puts on each set is recorded (each call reads the columns of the keys it holds).
    keep_probs: also keep the full probability rows (batch, heads, R, K); off by default to save memory.
    layers: restrict to these layers (None = all).
    argmax_keys: optional (batch, T) boolean mask of the keys the argmax may pick (default: every visible key).
    unseen_ok: rows may never be computed (generation stopped early, or a last token is never fed back);
        such rows keep position -1 instead of failing the session.
    keep_inputs: also keep what the probabilities were computed from (the rows' queries, the keys, the mask
        transformers passed), for a recomputation in float64 (`ocrheads verify`); small inputs only.
    """

    rows: torch.Tensor
    key_sets: torch.Tensor | None = None
    keep_probs: bool = False
    layers: frozenset[int] | None = None
    argmax_keys: torch.Tensor | None = None
    unseen_ok: bool = False
    keep_inputs: bool = False


@dataclass(frozen=True)
class SinkRedistribution:
    """Move (1 - beta) of the attention on sink keys to receiver keys, in proportion to what they already get.

    This is the paper's edit (METHOD.md 5.2) with beta kept on the sink. sinks/receivers: (batch, T) boolean
    key masks; receivers default to every key that is not a sink (the paper), and may be image keys only
    (VAR-style). Rows whose receivers have no attention at all are left unchanged.
    """

    heads: HeadMap
    beta: float
    sinks: torch.Tensor
    receivers: torch.Tensor | None = None


@dataclass(frozen=True)
class OutputSums:
    """Sum every head's output (its slice of o_proj's input) over chosen token positions, for mean ablation.

    tokens: (batch, T) boolean mask of the absolute positions to include (e.g. the attention mask, so padding
    is left out).
    """

    tokens: torch.Tensor


@dataclass(frozen=True)
class Edits:
    """Head interventions. zero: the head's output is 0 (paper's masking); uniform: the head attends evenly to
    every key it may see (Retrieval Head paper's masking); mean: the head's output is replaced by a fixed
    vector, its mean over a reference set (layer -> (heads, (h, head_dim) means)); sink: redistribute sink mass;
    per_item: each batch item ablates its own heads (layer -> ((batch, heads) bool mask, (heads, head_dim) means or
    None for zero)), so one pass ablates a different head in each copy of a batch."""

    zero: HeadMap = field(default_factory=dict)
    uniform: HeadMap = field(default_factory=dict)
    mean: dict[int, tuple[tuple[int, ...], torch.Tensor]] = field(default_factory=dict)
    sink: SinkRedistribution | None = None
    per_item: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = field(default_factory=dict)

    def layers(self) -> set[int]:
        sink_layers = set(self.sink.heads) if self.sink else set()
        return set(self.zero) | set(self.uniform) | set(self.mean) | sink_layers | set(self.per_item)


@dataclass(frozen=True)
class HeadOutputs:
    """Keep every head's output (its slice of o_proj's input, (batch, Q, heads, head_dim)) for attribution patching
    without module hooks: during a backward pass, `on_gradient(layer, output, gradient)` is called with the
    gradient of that layer's output as soon as it is computed, so the caller reduces it at once and no layer's
    gradient is kept. Needs gradients enabled; one forward call per layer.

    along: where on the ablation path the outputs are taken (integrated gradients): every head's output is moved
    that far from what it computes toward its ablated value, zero or `toward` (layer -> (heads, head_dim) means),
    and `output` is the moved one."""

    on_gradient: Callable[[int, torch.Tensor, torch.Tensor], None]
    along: float = 0.0
    toward: dict[int, torch.Tensor] | None = None


@dataclass
class KeptOutput:
    """One layer's head outputs as computed (batch, Q, heads, head_dim), and the scalar zero added to them: a leaf
    that needs a gradient, so a backward pass to the anchors runs through every layer's outputs even when no
    weight needs one."""

    clean: torch.Tensor
    anchor: torch.Tensor


@dataclass
class AttentionInputs:
    """What one call's captured rows were computed from, as the attention function received it."""

    query_rows: torch.Tensor  # (batch, heads, C, D) in the model's dtype, after rotary embedding and norms
    key: torch.Tensor  # (batch, kv_heads, K, D)
    mask_rows: torch.Tensor | None  # (batch, 1, C, K) boolean or additive, as transformers passed it; None: causal
    local_rows: torch.Tensor  # (batch, C) the rows' indices among this call's queries
    columns: torch.Tensor  # (C,) which of the capture's rows these are (the others were not in this call)
    q_len: int
    scaling: float
    softcap: float | None = None  # attention-logit softcapping (Gemma 2's), applied before the mask


@dataclass
class CapturedRows:
    """What one forward call captured in one layer."""

    layer: int
    positions: torch.Tensor  # (batch, R) absolute row positions, -1 where no row was captured in this call
    argmax: torch.Tensor  # (batch, heads, R) key index with the highest probability
    mass: torch.Tensor | None  # (batch, heads, R, S) probability mass on each key set
    probs: torch.Tensor | None  # (batch, heads, R, K) when keep_probs
    inputs: AttentionInputs | None = None  # when keep_inputs
