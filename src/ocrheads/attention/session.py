"""The context object that carries capture and edit requests to the registered attention function.

A session is active inside `with attention_session(model, ...)`; forward passes and `generate` calls made
inside it are captured and edited, everything outside runs as plain SDPA.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import PreTrainedModel

from ocrheads.attention.active import ACTIVE
from ocrheads.attention.install import check_installed
from ocrheads.attention.requests import (
    AttentionInputs,
    Capture,
    CapturedRows,
    Edits,
    HeadMap,
    HeadOutputs,
    KeptOutput,
    OutputSums,
)
from ocrheads.devices import model_device, to_device
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import CROSS, LINEAR, layer_kinds_of


class AttentionSession:
    def __init__(
        self,
        capture: Capture | None,
        edits: Edits,
        output_sums: OutputSums | None = None,
        keep_outputs: HeadOutputs | None = None,
        capture_rows: torch.Tensor | None = None,
        cross_layers: frozenset[int] = frozenset(),
    ):
        self.capture = capture
        self.cross_layers = cross_layers  # image cross-attention layers: their keys are image tokens, not positions
        self.capture_rows = capture_rows  # on the host: which rows a call holds is read there, not on a GPU
        self.edits = edits
        self.output_sums = output_sums
        self.keep_outputs = keep_outputs
        self.head_outputs: dict[int, KeptOutput] = {}  # layer -> outputs kept for attribution (HeadOutputs)
        self.sums: dict[int, torch.Tensor] = {}  # layer -> (heads, head_dim) float32 output sums
        self.summed_tokens: torch.Tensor | int = 0  # tokens counted into each layer's sums (a tensor on the model)
        self._indices: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}
        self._shared: dict = {}  # what the layers of the current forward call share (the attention function's)
        self._records: dict[int, list[CapturedRows]] = {}
        self._deferred: dict = {}  # layer -> decoding steps' rows not computed yet (the attention function's)
        self._end = 0  # positions processed so far in the current sequence
        self._call_rows = 0  # query rows of the current forward call (its first layer's)
        self._first_layer: int | None = None

    def advance(self, layer: int, q_len: int, k_len: int) -> int:
        """Count positions: the first layer of each forward call moves the end by its query length (a self-attention
        layer: transformers' Mllama runs only with a self-attention layer 0, whose cache counts the text).

        A call without cached keys (K == Q) starts a new sequence. Returns the end after this call.
        """
        if self._first_layer is None:
            self._first_layer = layer
        if layer == self._first_layer:
            self._end = q_len if k_len == q_len else self._end + q_len
            self._call_rows = q_len
            self._shared.clear()
        elif q_len != self._call_rows and (self.capture is not None or self.output_sums is not None):
            raise OcrHeadsError(
                f"layer {layer} computed {q_len} of this forward call's {self._call_rows} rows (the model skips the "
                "others there), so rows could not be captured or summed; pass logits_to_keep=last_logits(n), a slice"
            )
        return self._end

    def shared(self, key, build):
        """`build()`, made once per forward call for each `key` (a device, a mask) and reused by its other layers."""
        if key not in self._shared:
            self._shared[key] = build()
        return self._shared[key]

    def columns(self, start: int, end: int) -> slice | None:
        """Which of the capture's rows a call that computes positions [start, end) holds: a slice of them (the rows
        runners ask for are in position order, so a call's rows are contiguous), or None. Read from the host copy of
        the rows, so the attention function never waits for a GPU to find out."""
        rows = self.capture_rows
        held = torch.nonzero(((rows >= start) & (rows < end)).any(0)).flatten().tolist()
        if not held:
            return None
        if held != list(range(held[0], held[-1] + 1)):
            raise OcrHeadsError(
                f"capture rows {held} are computed by one call but are not adjacent; give rows in position order"
            )
        return slice(held[0], held[-1] + 1)

    def index(self, heads: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """`heads` as an index tensor on `device`, made once per session and device (a copy to a GPU waits for it)."""
        key = (heads, device)
        if key not in self._indices:
            self._indices[key] = torch.tensor(heads, device=device)
        return self._indices[key]

    def record(self, captured: CapturedRows) -> None:
        self._records.setdefault(captured.layer, []).append(captured)

    def deferred(self, layer: int):
        return self._deferred.get(layer)

    def defer(self, layer: int, rows):
        """Hold `rows` (the attention function's deferred rows of `layer`) until `finish_deferred`."""
        self._deferred[layer] = rows
        return rows

    def finish_deferred(self, layer: int | None = None) -> None:
        """Compute and record the deferred rows of `layer` (of every layer when None), in layer order."""
        for held in sorted(self._deferred) if layer is None else [layer]:
            self.record(self._deferred.pop(held).finish(self))

    def add_outputs(self, layer: int, sums: torch.Tensor, tokens: torch.Tensor) -> None:
        self.sums[layer] = self.sums[layer] + sums if layer in self.sums else sums
        if layer == self._first_layer:
            self.summed_tokens += tokens

    def keep_output(self, layer: int, output: torch.Tensor) -> torch.Tensor:
        """The output plus a scalar zero that needs a gradient, with a hook that hands the output's gradient to the
        request as soon as the backward pass computes it (HeadOutputs)."""
        if layer in self.head_outputs:
            raise OcrHeadsError(f"layer {layer} ran twice in one attribution session; give it one forward pass")
        anchor = torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
        clean = output.detach()
        kept = output + anchor
        kept.register_hook(lambda gradient: self.keep_outputs.on_gradient(layer, clean, gradient))
        self.head_outputs[layer] = KeptOutput(clean, anchor)
        return kept

    def inputs(self, layer: int) -> list[AttentionInputs]:
        """What each call of `layer` computed its captured rows from (captures with keep_inputs), in call order."""
        self.finish_deferred()
        return [record.inputs for record in self._records.get(layer, []) if record.inputs is not None]

    @property
    def layers(self) -> list[int]:
        self.finish_deferred()
        return sorted(self._records)

    def captured(self, layer: int) -> CapturedRows:
        """Everything captured in `layer`, merged over forward calls (prefill and decoding steps).

        Probability rows from calls with fewer keys are padded with zeros on the right (keys that did not
        exist yet), so rows of all calls stack into one (batch, heads, R, K_max) tensor.
        """
        self.finish_deferred()
        records = self._records.get(layer)
        if not records:
            raise OcrHeadsError(f"nothing was captured in layer {layer}; captured layers: {self.layers}")
        merged = records[0]
        positions, argmax, mass = merged.positions.clone(), merged.argmax.clone(), merged.mass
        probs = merged.probs
        k_max = max(record.probs.shape[-1] for record in records) if probs is not None else 0
        if probs is not None:
            probs = torch.nn.functional.pad(probs, (0, k_max - probs.shape[-1]))
        for record in records[1:]:
            here = record.positions >= 0
            positions = torch.where(here, record.positions, positions)
            argmax = torch.where(here[:, None], record.argmax, argmax)
            if mass is not None:
                mass = torch.where(here[:, None, :, None], record.mass, mass)
            if probs is not None:
                padded = torch.nn.functional.pad(record.probs, (0, k_max - record.probs.shape[-1]))
                probs = torch.where(here[:, None, :, None], padded, probs)
        return CapturedRows(layer, positions, argmax, mass, probs)

    def check_rows_seen(self) -> None:
        """Fail if a requested row was never computed (e.g. a position beyond the sequence)."""
        if self.capture is None or self.capture.unseen_ok:
            return
        if not self._records:
            if bool((self.capture.rows >= 0).any()):
                raise OcrHeadsError("no requested row was computed: did the forward pass run inside the session?")
            return
        seen = self.captured(self.layers[0]).positions >= 0
        missing = (self.capture.rows >= 0) & ~seen.to(self.capture.rows.device)
        if bool(missing.any()):
            batch_item, row = (int(v) for v in missing.nonzero()[0])
            position = int(self.capture.rows[batch_item, row])
            raise OcrHeadsError(
                f"row {position} of batch item {batch_item} was never computed: the sequence has "
                f"{self._end} positions (rows count from 0)"
            )


def _text_shape(model: PreTrainedModel) -> tuple[int, int, frozenset[int], frozenset[int]]:
    """Layers, heads, the layers without attention weights (linear attention), which no request can reach, and the
    image cross-attention layers."""
    text = model.config.get_text_config()
    kinds = layer_kinds_of(model.config)
    linear = frozenset(layer for layer, kind in enumerate(kinds) if kind == LINEAR)
    cross = frozenset(layer for layer, kind in enumerate(kinds) if kind == CROSS)
    return text.num_hidden_layers, text.num_attention_heads, linear, cross


def _check_heads(heads: HeadMap, n_layers: int, n_heads: int, what: str, linear: frozenset[int] = frozenset()) -> None:
    for layer, hs in heads.items():
        if not 0 <= layer < n_layers:
            raise OcrHeadsError(f"{what}: layer {layer} is outside the model (layers 0..{n_layers - 1})")
        if layer in linear:
            raise OcrHeadsError(f"{what}: layer {layer} is a linear-attention layer, with no attention weights to edit")
        bad = [h for h in hs if not 0 <= h < n_heads]
        if bad:
            raise OcrHeadsError(f"{what}: head(s) {bad} of layer {layer} outside the model (heads 0..{n_heads - 1})")


@contextmanager
def attention_session(
    model: PreTrainedModel,
    *,
    capture: Capture | None = None,
    edits: Edits | None = None,
    output_sums: OutputSums | None = None,
    head_outputs: HeadOutputs | None = None,
) -> Iterator[AttentionSession]:
    """Capture and/or edit attention (and/or sum or keep head outputs) in every forward pass of `model` in the
    block."""
    check_installed(model)
    n_layers, n_heads, linear, cross = _text_shape(model)
    edits = edits or Edits()
    _check_heads(edits.zero, n_layers, n_heads, "zeroed heads", linear)
    _check_heads(edits.uniform, n_layers, n_heads, "uniform heads", linear)
    means = {layer: heads for layer, (heads, _) in edits.mean.items()}
    _check_heads(means, n_layers, n_heads, "mean-ablated heads", linear)
    for layer, (mask, _) in edits.per_item.items():
        _check_heads({layer: ()}, n_layers, n_heads, "per-item ablations", linear)
        if mask.dim() != 2 or mask.shape[1] != n_heads:
            raise OcrHeadsError(f"per-item ablation of layer {layer}: the mask must be (batch, {n_heads})")
    if edits.sink is not None:
        _check_heads(edits.sink.heads, n_layers, n_heads, "sink heads", linear)
        if in_cross := sorted(set(edits.sink.heads) & cross):
            raise OcrHeadsError(f"sink heads: layer(s) {in_cross} attend to the image's tokens (cross-attention), not "
                                "to the text positions sinks and receivers are given in")  # fmt: skip
        if not 0.0 <= edits.sink.beta <= 1.0:
            raise OcrHeadsError(f"sink beta must lie in [0, 1], got {edits.sink.beta}")
    if capture is not None:
        bad_layers = sorted(layer for layer in capture.layers or () if not 0 <= layer < n_layers)
        if bad_layers:
            raise OcrHeadsError(f"capture: layer(s) {bad_layers} outside the model (layers 0..{n_layers - 1})")
        if capture.rows.dim() != 2:
            raise OcrHeadsError(f"capture rows must be a (batch, rows) tensor, got shape {tuple(capture.rows.shape)}")
    device = model_device(model)  # requests move once, not in every layer of every call
    rows = capture.rows.cpu() if capture is not None else None
    session = AttentionSession(
        to_device(capture, device), to_device(edits, device), to_device(output_sums, device), head_outputs, rows, cross
    )
    token = ACTIVE.set(session)
    try:
        yield session
    finally:
        ACTIVE.reset(token)
    session.finish_deferred()  # at once: the rows hold the last step's keys, which the cache has let go of
    session.check_rows_seen()
