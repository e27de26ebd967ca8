"""The one registered attention function: SDPA for the output, plus row captures and head edits on request.

It receives query/key/value after the model's own rotary embedding and norms, so it needs no model knowledge.
Probabilities are recomputed only for the rows being captured and, chunk by chunk, for the heads being edited;
a full heads x T x T matrix is never built. Captured rows are computed in float64 from the queries and keys as
given (float32 loses about 1e-4 of a probability where attention logits reach the hundreds), then stored in
float32; edited heads are computed in float32. Neither depends on the model's dtype.

Positions: rows and key sets are given in absolute sequence positions. A call's keys are the last K positions
before the end of what has been processed (sliding-window caches keep fewer keys than positions), and its
queries the last Q; the session counts the end (see AttentionSession.advance). In an image cross-attention layer
(Llama 3.2 Vision's) the keys are the image's tokens, not positions of the sequence: key sets, the argmax and
probability columns there index the image's keys from 0.

Masks: transformers hands this function the same masks as SDPA (`sdpa_mask`): None where causal attention may
be implied (then query i sees keys up to K - Q + i, which also covers cached decoding), or a boolean /
additive (batch, 1, Q, K) mask.

Decoding: a step's captured row waits, as its query and mask row only, until a later step of the same layer holds
all of its keys; the rows of all steps are then computed at once (DeferredRows). A decoding step's GPU time is
kernel launches, and computing its row at once would launch some thirty more in every layer of every step.

Attention-logit softcapping (Gemma 2's, so PaliGemma 2's): SDPA cannot apply it, so where a layer asks for it the
output is the layer's own eager attention's (the full weights of one call, as eager always builds them), and every
probability recomputed here applies it too: softcap * tanh(logits / softcap), before the mask, as eager does.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ocrheads.attention.active import current_session
from ocrheads.attention.requests import AttentionInputs, Capture, CapturedRows, SinkRedistribution
from ocrheads.devices import exact_dtype
from ocrheads.errors import OcrHeadsError

ATTENTION_NAME = "ocrheads"
EDIT_CHUNK_ROWS = 512
_MASKED = torch.finfo(torch.float32).min


@dataclass(frozen=True)
class _Masking:
    """One call's mask as transformers passed it, and the sizes it is read with: enough to rebuild the mask of any
    of the call's query rows later, without the call's keys."""

    mask: torch.Tensor | None
    batch: int
    q_len: int
    k_len: int

    def bias(self, local_rows: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Additive mask (batch, 1, R, K) in `dtype` for query rows given as indices into the call's queries."""
        if self.mask is None:
            absolute = local_rows + (self.k_len - self.q_len)
            allowed = torch.arange(self.k_len, device=local_rows.device) <= absolute[:, None, :, None]
            return torch.where(allowed, 0.0, _MASKED).to(dtype)
        rows = self.rows(local_rows)
        return (torch.where(rows, 0.0, _MASKED) if rows.dtype == torch.bool else rows).to(dtype)

    def rows(self, local_rows: torch.Tensor) -> torch.Tensor | None:
        """The mask (batch, 1, R, K) at the given query rows, as it is; None: causal."""
        if self.mask is None:
            return None
        mask = self.mask[..., : self.k_len].expand(self.batch, -1, -1, -1)
        return mask.gather(2, local_rows[:, None, :, None].expand(-1, mask.shape[1], -1, self.k_len))


class _Call:
    """One attention call's tensors and the geometry shared by captures and edits."""

    def __init__(self, query, key, value, attention_mask, scaling, end, softcap=None, cross=False):
        self.query, self.key, self.value = query, key, value
        self.softcap = softcap
        self.batch, self.heads, self.q_len, _ = query.shape
        self.kv_heads, self.k_len = key.shape[1], key.shape[2]
        self.group = self.heads // self.kv_heads
        self.key_offset = 0 if cross else end - self.k_len  # absolute position of key 0 (cross: the image's key 0)
        self.query_offset = end - self.q_len  # absolute position of query 0
        self.decoding = self.q_len == 1 and self.k_len > 1  # one new query against cached keys
        self.scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
        self.masking = _Masking(attention_mask, self.batch, self.q_len, self.k_len)
        self._keys: dict[torch.dtype, torch.Tensor] = {}

    def key_in(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._keys:
            self._keys[dtype] = self.key.to(dtype)
        return self._keys[dtype]

    def scores(
        self, query_rows: torch.Tensor, bias: torch.Tensor, head_keys: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scaled logits (batch, h, R, K) plus `bias` (the additive mask), in the bias's dtype, for query rows
        (batch, h, R, D). Scaling and mask are added in one kernel (a launch saved in every layer).

        Without head_keys all heads are given and grouped onto their key heads without copying keys (GQA);
        with it, head_keys[:, i] (in the bias's dtype) are the keys of query head i.
        """
        dtype = bias.dtype
        if head_keys is None:  # a key head's query heads stacked on its rows: one matmul per key head, no key copies
            rows = query_rows.shape[2]
            grouped = query_rows.to(dtype).unflatten(1, (self.kv_heads, self.group)).flatten(2, 3)
            logits = (grouped @ self.key_in(dtype).transpose(-1, -2)).unflatten(2, (self.group, rows)).flatten(1, 2)
        else:
            logits = query_rows.to(dtype) @ head_keys.transpose(-1, -2)
        if self.softcap is not None:
            return bias + self.softcap * torch.tanh(logits * (self.scaling / self.softcap))
        return torch.add(bias, logits, alpha=self.scaling)


@dataclass
class _SharedRows:
    """What every layer of one forward call shares about its captured rows (their indices, mask and key sets), made
    once per call and device instead of in every layer: each op is a kernel launch on a GPU, and launches, not
    arithmetic, are what capturing costs there."""

    local: torch.Tensor | None  # (batch, C) the rows' indices among the call's queries (None: rows of several calls)
    positions: torch.Tensor  # (batch, R) absolute positions of the rows this call computes, -1 elsewhere
    bias: torch.Tensor  # (batch, 1, C, K) additive mask in the exact dtype
    key_sets: torch.Tensor | None  # (batch, S, K) in the exact dtype
    blocked: torch.Tensor | None  # (batch, 1, 1, K) keys the argmax may not pick


def _shared_rows(call: _Call, capture: Capture, columns: slice) -> _SharedRows:
    device, precision = call.query.device, exact_dtype(call.query.device)
    rows = capture.rows.to(device)
    local = rows - call.query_offset
    valid = (rows >= 0) & (local >= 0) & (local < call.q_len)
    local = local[:, columns].clamp(0, call.q_len - 1)
    key_sets, blocked = _key_columns(call, capture, precision)
    return _SharedRows(local, torch.where(valid, rows, -1), call.masking.bias(local, precision), key_sets, blocked)


def _key_columns(call: _Call, capture: Capture, precision: torch.dtype) -> tuple:
    """The key sets (batch, S, K) in `precision` and the keys the argmax may not pick (batch, 1, 1, K), at the
    call's keys."""
    device = call.query.device
    keys = slice(call.key_offset, call.key_offset + call.k_len)
    key_sets = None if capture.key_sets is None else capture.key_sets.to(device)[..., keys].to(precision)
    blocked = None if capture.argmax_keys is None else ~capture.argmax_keys.to(device)[:, None, None, keys]
    return key_sets, blocked


def _query_rows(call: _Call, shared: _SharedRows) -> torch.Tensor:
    """The queries (batch, heads, C, D) of the captured rows this call computes."""
    head_dim = call.query.shape[-1]
    return call.query.gather(2, shared.local[:, None, :, None].expand(-1, call.heads, -1, head_dim))


def _capture(
    call: _Call, capture: Capture, layer: int, columns: slice, shared: _SharedRows, query_rows: torch.Tensor
) -> CapturedRows:
    """Probabilities of the requested rows `query_rows` against the call's keys: only `columns` of `capture.rows`,
    those some batch item has in this call (a decoding step computes one of the answer's rows, not all of them).
    Nothing here waits for the GPU: the columns come from the host, and everything else stays on the layer's
    device."""
    size = capture.rows.shape[1]
    probs = call.scores(query_rows, shared.bias).softmax(-1)
    mass = None
    if shared.key_sets is not None:
        mass = _spread(torch.einsum("bhrk,bsk->bhrs", probs, shared.key_sets).float(), columns, size)
    eligible = probs if shared.blocked is None else probs.masked_fill(shared.blocked, -1.0)
    argmax = eligible.argmax(-1)  # among the call's keys; shifted to positions where they do not start at 0
    inputs = None
    if capture.keep_inputs:
        mask_rows = call.masking.rows(shared.local)
        inputs = AttentionInputs(
            query_rows, call.key, mask_rows, shared.local, columns, call.q_len, call.scaling, call.softcap
        )
    return CapturedRows(
        layer=layer,
        positions=shared.positions,
        argmax=_spread(argmax + call.key_offset if call.key_offset else argmax, columns, size),
        mass=mass,
        probs=_spread(torch.nn.functional.pad(probs.float(), (call.key_offset, 0)), columns, size)
        if capture.keep_probs
        else None,
        inputs=inputs,
    )


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a cache key holds the step, not a reusable id
class _Step:
    """A decoding step whose captured rows wait: its mask, where its query sits, and which capture columns it holds
    (one per batch item's row at that position). Made once per step, shared by its layers; no torch call."""

    masking: _Masking
    position: int
    columns: slice

    @property
    def width(self) -> int:
        return self.columns.stop - self.columns.start


class DeferredRows:
    """One layer's decoding steps whose captured rows wait for the step that holds all their keys: each step adds
    its query and its `_Step`, and nothing is computed until `finish`. Steps join while the keys they see start at
    the same position (a sliding-window cache that drops keys ends the wait, and the rows are computed then) and
    while each capture column is held by one step (ragged rows can put a column's rows at two positions)."""

    def __init__(self, call: _Call, capture: Capture, layer: int):
        self.capture, self.layer = capture, layer
        self.key_offset = call.key_offset
        self.queries: list[torch.Tensor] = []
        self.steps: list[_Step] = []
        self.last = call

    def joins(self, call: _Call, columns: slice | None) -> bool:
        after = columns is None or columns.start >= self.steps[-1].columns.stop
        return call.decoding and call.key_offset == self.key_offset and after

    def add(self, call: _Call, step: _Step) -> None:
        self.last = call
        self.queries.append(call.query)
        self.steps.append(step)

    def finish(self, session) -> CapturedRows:
        """Every step's rows against the last step's keys, which hold each earlier step's keys and more: a key a step
        did not see is masked in its row, so its probabilities are what the step itself would have computed."""
        call = self.last
        columns = slice(self.steps[0].columns.start, self.steps[-1].columns.stop)
        key = ("deferred", call.query.device, *self.steps)
        shared = session.shared(key, lambda: _joined_rows(self.steps, call, self.capture))
        steps = zip(self.queries, self.steps, strict=True)
        query_rows = torch.cat([query.expand(-1, -1, step.width, -1) for query, step in steps], 2)
        return _capture(call, self.capture, self.layer, columns, shared, query_rows)


def _joined_rows(steps: list[_Step], call: _Call, capture: Capture) -> _SharedRows:
    """The shared rows of consecutive decoding steps, read at the keys of `call` (the last step's): each step's mask
    row for each of its columns, the keys after the step masked."""
    device, precision = call.query.device, exact_dtype(call.query.device)
    biases = []
    for step in steps:
        local = torch.zeros(call.batch, step.width, dtype=torch.long, device=device)
        bias = step.masking.bias(local, precision)
        biases.append(torch.nn.functional.pad(bias, (0, call.k_len - step.masking.k_len), value=_MASKED))
    rows = capture.rows.to(device)
    held = (rows >= steps[0].position) & (rows <= steps[-1].position)
    key_sets, blocked = _key_columns(call, capture, precision)
    return _SharedRows(None, torch.where(held, rows, -1), torch.cat(biases, 2), key_sets, blocked)


def _capture_call(session, call: _Call, capture: Capture, layer: int) -> None:
    """Capture the rows this call computes: at once, or, for a decoding step, deferred (DeferredRows)."""
    columns = session.shared(("columns", call.query_offset, call.q_len),
                             lambda: session.columns(call.query_offset, call.query_offset + call.q_len))  # fmt: skip
    deferred = session.deferred(layer)
    if deferred is not None and not deferred.joins(call, columns):
        session.finish_deferred(layer)
        deferred = None
    if columns is None:
        return
    mask_id = None if call.masking.mask is None else id(call.masking.mask)
    if call.decoding and not capture.keep_inputs:
        step = session.shared(("step", call.k_len, mask_id), lambda: _Step(call.masking, call.query_offset, columns))
        if deferred is None:
            deferred = session.defer(layer, DeferredRows(call, capture, layer))
        deferred.add(call, step)
        return
    shared = session.shared((call.query.device, call.k_len, mask_id), lambda: _shared_rows(call, capture, columns))
    session.record(_capture(call, capture, layer, columns, shared, _query_rows(call, shared)))


def _spread(values: torch.Tensor, columns: slice, size: int) -> torch.Tensor:
    """(batch, heads, C, ...) values of the computed columns, placed at `columns` of `size` (zeros elsewhere)."""
    if columns == slice(0, size):
        return values
    spread = values.new_zeros((*values.shape[:2], size, *values.shape[3:]))
    spread[:, :, columns] = values
    return spread


def _redistribute_sink(logits: torch.Tensor, sink: SinkRedistribution, keys: slice) -> torch.Tensor:
    """The attention (softmax of `logits`, masked) with (1 - beta) of the sink keys' mass moved to the receiver keys
    the row sees, in proportion to what each already gets. The proportions are a softmax over the receivers' own
    logits: a head that puts nearly all its attention on the sink (the usual sink head) leaves its receivers a mass
    that underflows in the full softmax, and dividing by it gave inf x 0 = NaN. Rows without receivers stay as they
    are."""
    sinks = sink.sinks.to(logits.device)[:, None, None, keys]
    receivers = ~sinks if sink.receivers is None else sink.receivers.to(logits.device)[:, None, None, keys] & ~sinks
    receivers = receivers & (logits > _MASKED / 2)  # masked keys receive nothing
    probs = logits.softmax(-1)
    share = logits.masked_fill(~receivers, float("-inf")).softmax(-1)  # NaN in rows without receivers
    moved = (1 - sink.beta) * (probs * sinks).sum(-1, keepdim=True)
    edited = torch.where(sinks, probs * sink.beta, probs + moved * share)
    return torch.where(receivers.any(-1, keepdim=True), edited, probs)


def _head_outputs(call: _Call, heads: torch.Tensor, attention: str, sink: SinkRedistribution | None = None):
    """Outputs (batch, Q, h, D) in float32 of `heads` (an index on the layer's device) with their attention replaced,
    chunk by chunk: "uniform" over the keys each row sees, or "sink"-redistributed."""
    device = call.query.device
    kv_index = heads // call.group
    value = call.value.float()[:, kv_index]
    head_keys = call.key_in(torch.float32)[:, kv_index] if attention != "uniform" else None
    keys = slice(call.key_offset, call.key_offset + call.k_len)
    outputs = []
    for start in range(0, call.q_len, EDIT_CHUNK_ROWS):
        local = torch.arange(start, min(start + EDIT_CHUNK_ROWS, call.q_len), device=device).expand(call.batch, -1)
        bias = call.masking.bias(local)
        if attention == "uniform":
            probs = bias.expand(-1, len(heads), -1, -1).softmax(-1)
        else:
            logits = call.scores(call.query[:, heads, start : start + local.shape[1]], bias, head_keys)
            probs = _redistribute_sink(logits, sink, keys)
        outputs.append((probs @ value).transpose(1, 2))
    return torch.cat(outputs, dim=1)


def ocrheads_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Registered under ATTENTION_NAME; identical to SDPA (to the model's eager attention where it softcaps) unless a
    session asks for captures or edits."""
    softcap = kwargs.get("softcap")
    if softcap is None:
        output, _ = sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    else:
        output = _eager_output(
            module, _Call(query, key, value, attention_mask, scaling, key.shape[2], softcap), dropout
        )
    session = current_session()
    if session is None:
        return output, None
    layer = module.layer_idx
    end = session.advance(layer, query.shape[2], key.shape[2])
    cross = layer in session.cross_layers
    if cross and attention_mask is None:  # every image key is visible: not the causal mask None means elsewhere
        attention_mask = torch.ones(1, 1, query.shape[2], key.shape[2], dtype=torch.bool, device=query.device)
    capture, edits = session.capture, session.edits
    if session.output_sums is not None:  # positions past the mask (tokens being generated) are left out
        tokens = session.output_sums.tokens.to(output.device)
        tokens = torch.nn.functional.pad(tokens, (0, max(0, end - tokens.shape[1])))[:, end - query.shape[2] : end]
        session.add_outputs(layer, torch.einsum("bq,bqhd->hd", tokens.float(), output.float()), tokens.sum())
    wants_capture = capture is not None and (capture.layers is None or layer in capture.layers)
    if not wants_capture and layer not in edits.layers():
        return _kept(session, layer, output), None
    if attention_mask is None and 1 < query.shape[2] < key.shape[2]:
        raise OcrHeadsError("a prefill into a pre-allocated (static) cache is not supported; use the default cache")
    call = _Call(query, key, value, attention_mask, scaling, end, softcap, cross)
    if wants_capture:
        _capture_call(session, call, capture, layer)
    replacements = ((edits.uniform.get(layer), "uniform"), (edits.sink and edits.sink.heads.get(layer), "sink"))
    for heads, attention in replacements:
        if heads:
            index = session.index(heads, output.device)
            replaced = _head_outputs(call, index, attention, edits.sink).to(output.dtype)
            output = output.index_copy(2, index, replaced)
    if layer in edits.mean:
        heads, means = edits.mean[layer]
        replaced = means.to(output.device, output.dtype).expand(output.shape[0], output.shape[1], -1, -1)
        output = output.index_copy(2, session.index(heads, output.device), replaced)
    if heads := edits.zero.get(layer):
        output = output.index_fill(2, session.index(heads, output.device), 0.0)
    if layer in edits.per_item:
        mask, means = edits.per_item[layer]
        replacement = 0.0 if means is None else means.to(output.device, output.dtype)[None, None]
        output = torch.where(mask.to(output.device)[:, None, :, None], replacement, output)
    return _kept(session, layer, output), None


def _eager_output(module, call: _Call, dropout: float) -> torch.Tensor:
    """The layer's own eager attention output (batch, Q, heads, D), handed the mask as the additive mask in the
    model's dtype it expects (transformers gives this function SDPA's masks)."""
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise OcrHeadsError(f"{type(module).__name__} softcaps its attention logits, which SDPA cannot, and has no "
                            "eager attention function to compute them with")  # fmt: skip
    rows = torch.arange(call.q_len, device=call.query.device).expand(call.batch, -1)
    bias = call.masking.bias(rows).clamp(min=torch.finfo(call.query.dtype).min).to(call.query.dtype)
    output, _ = eager(module, call.query, call.key, call.value, bias, dropout=dropout, scaling=call.scaling,
                      softcap=call.softcap)  # fmt: skip
    return output


def _kept(session, layer: int, output: torch.Tensor) -> torch.Tensor:
    """The output, kept for attribution when the session asks for head outputs (moved along the ablation path
    first, where it asks for a point on it)."""
    request = session.keep_outputs
    if request is None:
        return output
    if request.along:
        ablated = 0.0 if request.toward is None else request.toward[layer].to(output.device, output.dtype)[None, None]
        output = output + request.along * (ablated - output)
    return session.keep_output(layer, output)
