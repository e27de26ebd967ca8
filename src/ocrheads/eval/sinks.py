"""Which keys are attention sinks in a batch: the first tokens of each sequence, or the keys that draw the most
attention of the edited heads.

Mass detection looks at the last prompt token (the row that writes the first answer token): a key is a sink
when the edited heads, averaged, give it at least `threshold` of their attention there. One extra prefill finds
them; heads with no such key leave the sample unedited.
"""

from __future__ import annotations

import torch

from ocrheads.attention import Capture, attention_session
from ocrheads.attention.requests import HeadMap
from ocrheads.devices import to_cpu
from ocrheads.models.base import ModelAdapter


def first_sinks(attention_mask: torch.Tensor, count: int, length: int) -> torch.Tensor:
    """(batch, length) mask of the first `count` real tokens of each left-padded sequence."""
    padding = (attention_mask.shape[1] - attention_mask.sum(1)).tolist()
    sinks = torch.zeros(attention_mask.shape[0], length, dtype=torch.bool)
    for item, pad in enumerate(padding):
        sinks[item, pad : pad + count] = True
    return sinks


def mass_sinks(adapter: ModelAdapter, batch, heads: HeadMap, threshold: float, length: int) -> torch.Tensor:
    """(batch, length) mask of the keys that get >= threshold of the heads' mean attention at the last prompt row."""
    size, prompt_length = batch["input_ids"].shape
    rows = torch.full((size, 1), prompt_length - 1)
    capture = Capture(rows, keep_probs=True, layers=frozenset(heads))
    with torch.no_grad(), attention_session(adapter.model, capture=capture) as session:
        adapter.forward(batch)
    per_head = [to_cpu(session.captured(layer).probs[:, list(hs), 0]) for layer, hs in heads.items()]  # layers' GPUs
    mean = torch.cat(per_head, 1).mean(1)  # (batch, prompt_length)
    return torch.nn.functional.pad(mean >= threshold, (0, length - prompt_length))
