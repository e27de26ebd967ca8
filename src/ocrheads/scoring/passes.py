"""One pass per batch that writes (or teacher-forces) the answers while capturing the rows that write them.

Capture rides on the generation itself: the rows from the last prompt token on are requested before any token
exists, with per-sample key sets, so scoring costs one generate call and no second forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import BatchEncoding

from ocrheads.attention import Capture, attention_session
from ocrheads.devices import to_cpu, to_device
from ocrheads.heads import CROSS
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.options import ScoringOptions


@dataclass
class Written:
    """What one batch wrote and what its heads did on the rows from the last prompt token on."""

    prompt_length: int  # P, padded; row P - 1 + n writes token n
    length: int  # P plus the answer tokens room was made for: every key position is below it
    padding: list[int]  # left padding per item
    tokens: list[list[int]]  # written token ids per item, up to the end of sequence
    argmax: torch.Tensor  # (layers captured, batch, heads, rows) absolute key positions
    mass: torch.Tensor | None  # (layers, batch, heads, rows, sets)
    positions: torch.Tensor  # (batch, rows) the absolute row of each column, -1 where it was never computed

    def column(self, item: int, row: int) -> int | None:
        """The captured column of absolute `row` of batch item `item`, or None when it was never computed."""
        found = torch.nonzero(self.positions[item] == row).flatten()
        return int(found[0]) if len(found) else None


def append_tokens(batch: BatchEncoding, tokens: torch.Tensor, mask: torch.Tensor, types: dict | None = None) -> dict:
    """The batch with written tokens appended as generate appends them: attended where `mask`, of token type 0 but
    where `types` (the adapter's written_token_types) says otherwise."""
    tokens, mask = to_device((tokens, mask), batch["input_ids"].device)
    extended = dict(batch, input_ids=torch.cat([batch["input_ids"], tokens], 1))
    if "cross_attention_mask" in batch:  # (batch, T, images, tiles): a written token sees what the last one sees
        crossed = batch["cross_attention_mask"]
        extended["cross_attention_mask"] = torch.cat([crossed, crossed[:, -1:].expand(-1, tokens.shape[1], -1, -1)], 1)
    for name in ("attention_mask", "mm_token_type_ids", "token_type_ids"):
        if name in batch:
            fill = torch.full_like(tokens, (types or {}).get(name, 0))
            extra = mask if name == "attention_mask" else fill
            extended[name] = torch.cat([batch[name], extra.to(batch[name].dtype)], 1)
    return extended


def write_answers(
    adapter: ModelAdapter,
    batch: BatchEncoding,
    options: ScoringOptions,
    *,
    gold: list[list[int]] | None = None,
    key_sets: torch.Tensor | None = None,
    extra_rows: torch.Tensor | None = None,
    layers: list[int] | None = None,
) -> Written:
    """Generate greedily (or teacher-force `gold` token ids) inside a capture session.

    Rows P - 1 .. P + n are captured (plus `extra_rows`, (batch, E) absolute, -1 padded, e.g. prompt rows), in
    `layers` (default: every layer with attention weights); key_sets are (batch, S, P + n) masks whose attention
    mass is recorded ((batch, S, image keys) where `layers` are image cross-attention layers).
    """
    model = adapter.model
    input_ids = batch["input_ids"]
    size, prompt_length = input_ids.shape
    new = max(len(ids) for ids in gold) if gold is not None else options.max_new_tokens
    rows = torch.arange(prompt_length - 1, prompt_length + new).expand(size, -1)
    if extra_rows is not None:
        rows = torch.cat([extra_rows, rows], 1)
    cross = layers is not None and all(adapter.layer_kinds[layer] == CROSS for layer in layers)
    argmax_keys = None
    if options.argmax_keys == "prompt" and not cross:  # a cross-attention layer's keys (the image's) are all prompt
        argmax_keys = (torch.arange(prompt_length + new) < prompt_length - 1).expand(size, -1)
    if key_sets is not None and key_sets.shape[-1] < prompt_length + new:  # room for the written tokens' keys
        key_sets = torch.nn.functional.pad(key_sets, (0, prompt_length + new - key_sets.shape[-1]))
    chosen = None if layers is None else frozenset(layers)
    capture = Capture(rows, key_sets=key_sets, argmax_keys=argmax_keys, unseen_ok=True, layers=chosen)
    padding = (batch["attention_mask"].shape[1] - batch["attention_mask"].sum(1)).tolist()
    with torch.no_grad(), attention_session(model, capture=capture) as session:
        if gold is None:
            sequences = adapter.generate(batch, new)
            written = [adapter.until_end(ids) for ids in sequences[:, prompt_length:].tolist()]
        else:
            tokens = torch.tensor([ids + [0] * (new - len(ids)) for ids in gold])
            mask = torch.tensor([[1] * len(ids) + [0] * (new - len(ids)) for ids in gold])
            extended = append_tokens(batch, tokens, mask, adapter.written_token_types)
            adapter.forward(extended)  # only the rows are read
            written = [list(ids) for ids in gold]
    captured = to_cpu([session.captured(layer) for layer in (session.layers if layers is None else layers)])
    return Written(
        prompt_length=prompt_length,
        length=prompt_length + new,
        padding=padding,
        tokens=written,
        argmax=torch.stack([c.argmax for c in captured]),
        mass=torch.stack([c.mass for c in captured]) if key_sets is not None else None,
        positions=captured[0].positions,
    )
