"""The tidy score table: one row per (sample, scored token, layer, head), and per-sample outcomes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import torch

SCHEMA = pa.schema(
    [
        ("sample", pa.string()),
        ("token", pa.int32()),
        ("row", pa.int32()),
        ("layer", pa.int16()),
        ("head", pa.int16()),
        ("hit", pa.bool_()),
        ("argmax_key", pa.int32()),
        ("mass", pa.float32()),
        ("c", pa.float32()),
        ("value", pa.float32()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


@dataclass
class Outcome:
    """What happened to one sample: scored (with how many entries), or why not."""

    sample: str
    scored: bool
    written: str
    c: float
    entries: int = 0
    reason: str = ""


class EntryTable:
    """Accumulates rows column by column; positions are relative to each sample's own first token."""

    def __init__(self, layers: list[int], heads: int):
        self.layers = list(layers)  # the layers scored, by their index in the model
        self.layer = np.repeat(np.asarray(self.layers, dtype=np.int16), heads)
        self.head = np.tile(np.arange(heads, dtype=np.int16), len(self.layers))
        self.columns: dict[str, list[np.ndarray]] = defaultdict(list)

    def add(self, sample: str, token: int, row: int, hit: torch.Tensor, argmax: torch.Tensor, mass, c, value) -> None:
        """One scored token: hit/argmax/mass/value are (scored layers, heads) tensors."""
        count = len(self.layer)
        self.columns["sample"].append(np.full(count, sample, dtype=object))
        self.columns["token"].append(np.full(count, token, dtype=np.int32))
        self.columns["row"].append(np.full(count, row, dtype=np.int32))
        self.columns["layer"].append(self.layer)
        self.columns["head"].append(self.head)
        self.columns["hit"].append(hit.flatten().numpy())
        self.columns["argmax_key"].append(argmax.flatten().numpy().astype(np.int32))
        self.columns["mass"].append(mass.flatten().numpy().astype(np.float32))
        self.columns["c"].append(np.full(count, c, dtype=np.float32))
        self.columns["value"].append(value.flatten().numpy().astype(np.float32))

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.columns:
            return {field.name: np.array([], dtype=field.type.to_pandas_dtype()) for field in SCHEMA}
        return {name: np.concatenate(self.columns[name]) for name in COLUMNS}

    def to_arrow(self) -> pa.Table:
        """The same schema whatever the table holds, empty tables included, so every part merges with every other."""
        return pa.table(self.arrays(), schema=SCHEMA)


CAUSAL_SCHEMA = pa.schema(
    [
        ("sample", pa.string()),
        ("token", pa.int32()),  # the answer token; -1: the whole answer (without --per-token)
        ("layer", pa.int16()),
        ("head", pa.int16()),
        ("estimate", pa.float32()),  # attribution estimate of the metric's change when the head is ablated
        ("exact", pa.float32()),  # the change measured by ablating the head (NaN unless measured: --exact, --exact-top)
        ("value", pa.float32()),  # the head's score: the drop, -(exact if measured else estimate)
    ]
)


class CausalTable:
    """Causal rows: per sample, answer token, layer and head, the estimated (and measured) change."""

    def __init__(self, layers: list[int], heads: int):
        self.layers, self.heads = list(layers), heads  # the layers scored, by their index in the model
        self.columns: dict[str, list[np.ndarray]] = defaultdict(list)

    def add(self, sample: str, estimate: torch.Tensor, exact: torch.Tensor | None, whole_answer: bool = False) -> None:
        """One sample's (tokens, scored layers, heads) estimates and, when measured, exact changes; `whole_answer`:
        one row per head for the whole answer, token -1."""
        tokens = estimate.shape[0]
        count = tokens * len(self.layers) * self.heads
        grid = np.indices((tokens, len(self.layers), self.heads)).reshape(3, -1)
        grid[1] = np.asarray(self.layers)[grid[1]]
        if whole_answer:
            grid[0] = -1
        measured = exact.flatten().numpy() if exact is not None else np.full(count, np.nan, dtype=np.float32)
        chosen = np.where(np.isnan(measured), estimate.flatten().numpy(), measured)  # measured where it was
        self.columns["sample"].append(np.full(count, sample, dtype=object))
        self.columns["token"].append(grid[0].astype(np.int32))
        self.columns["layer"].append(grid[1].astype(np.int16))
        self.columns["head"].append(grid[2].astype(np.int16))
        self.columns["estimate"].append(estimate.flatten().numpy().astype(np.float32))
        self.columns["exact"].append(measured.astype(np.float32))
        self.columns["value"].append((-chosen).astype(np.float32))

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.columns:
            return {field.name: np.array([], dtype=field.type.to_pandas_dtype()) for field in CAUSAL_SCHEMA}
        return {name: np.concatenate(self.columns[name]) for name in CAUSAL_SCHEMA.names}

    def to_arrow(self) -> pa.Table:
        return pa.table(self.arrays(), schema=CAUSAL_SCHEMA)
