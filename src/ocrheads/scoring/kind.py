"""What a scoring kind is: everything the runner, the CLI, selection, analysis and the report need to know about it.

ocrheads.scoring.kinds defines one ScoringKind per kind, naming the module of its scoring code (imported when a
batch is first scored). A new kind is a module of its own and one entry of that list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
from PIL import Image
from pydantic import BaseModel, ValidationError

from ocrheads.data.manifest import Sample
from ocrheads.errors import DataError, OcrHeadsError
from ocrheads.heads import ATTENTION, CROSS, Head, HeadScores
from ocrheads.scoring.table import Outcome

if TYPE_CHECKING:
    from ocrheads.models.base import ModelAdapter


@dataclass(frozen=True)
class Batch:
    """One batch to score: its samples, their pages (empty lists for text samples), what the kind prepared once for
    the whole run, and the token budget of one pass (kinds with a backward pass split the batch under it)."""

    samples: list[Sample]
    pages: list[list[Image.Image]]
    prepared: object = None
    max_batch_tokens: int | None = None


@dataclass(frozen=True)
class ScoringKind:
    name: str
    title: str  # how figures and the report name its heads
    summary: str  # one line: what it scores
    modality: Literal["image", "text"] | None  # the samples it scores; None: either, one modality per dataset
    needs_boxes: bool  # its samples must carry character boxes
    options: type[BaseModel]
    schema: pa.Schema  # of its tidy table
    new_table: Callable[[list[int], int], object]  # (scored layers, heads) -> a table with .add(...), .to_arrow()
    score_batch: Callable[[ModelAdapter, Batch, BaseModel, object], list[Outcome]]
    per_sample: bool  # per-head lists hold one value per sample (its entries summed), else one per entry
    out_of_memory: str  # what to lower when a batch runs out of GPU memory
    layer_kinds: tuple[str, ...] = (ATTENTION,)  # the kinds of layer it scores (no argmax without attention weights)
    image_keys: bool = False  # its keys must be image tokens: only cross-attention layers where a model has them
    prepare: Callable[[ModelAdapter, Path, list[Sample], BaseModel, int], object] = field(
        default=lambda adapter, data, samples, options, batch_size: None
    )
    presets: Callable[..., BaseModel] | None = None  # (preset name, **given options) -> options, where it has presets

    def make_options(self, preset: str, given: dict) -> BaseModel:
        """The options the command line asked for: a preset with the given options over it, where the kind has
        presets, else the given options over the defaults; options that do not go together are an error that
        says why."""
        try:
            return self.presets(preset, **given) if self.presets else self.options(**given)
        except ValidationError as err:
            reasons = "; ".join(error["msg"].removeprefix("Value error, ") for error in err.errors())
            raise OcrHeadsError(f"{self.name} options: {reasons}") from None

    def check_samples(self, samples: list[Sample], data: Path) -> list[Sample]:
        """The samples, or a DataError that names the first one this kind cannot score and the fix."""
        if not samples:
            raise DataError(f"{data} holds no samples; generate some with `ocrheads data ...`")
        wanted = self.modality or samples[0].modality
        wrong = next((s for s in samples if s.modality != wanted), None)
        if wrong is not None:
            needs = f"{wanted} samples" if self.modality else "samples of one modality"
            raise DataError(
                f"{self.name} scoring needs {needs}, but {wrong.id} in {data} is {wrong.modality}; "
                f"generate the dataset with --modality {wanted}"
            )
        if self.needs_boxes and (boxless := next((s for s in samples if not any(c.box for c in s.answer_chars)), None)):
            raise DataError(
                f"sample {boxless.id} in {data} has no answer boxes; {self.name} scores need character boxes"
            )
        return samples

    def scored_layers(self, layer_kinds: tuple[str, ...]) -> list[int]:
        """The layers (of a model whose layers are of `layer_kinds`) this kind scores. Where a model's image enters
        through cross-attention (Llama 3.2 Vision), its self-attention keys hold no pixels, so a kind that needs
        image keys scores the cross-attention layers alone."""
        kinds = (CROSS,) if self.image_keys and CROSS in layer_kinds else self.layer_kinds
        return [layer for layer, kind in enumerate(layer_kinds) if kind in kinds]

    def table_for(self, adapter: ModelAdapter):
        """An empty table for this kind's rows from `adapter`'s model: every head of each layer it scores."""
        return self.new_table(self.scored_layers(adapter.layer_kinds), adapter.grid[1])

    def head_scores(self, columns: dict[str, np.ndarray], grid: tuple[int, int], layers: list[int]) -> HeadScores:
        """Per-head lists from the table's sample and value columns (rows layer-major over the scored `layers`): one
        value per scored entry, or per sample summed over its entries (in the order the samples were scored)."""
        heads = grid[1]
        width = len(layers) * heads
        values = np.asarray(columns["value"], dtype=np.float64).reshape(-1, width)
        if self.per_sample and len(values):
            samples = np.asarray(columns["sample"]).reshape(-1, width)[:, 0]
            _, first, inverse = np.unique(samples, return_index=True, return_inverse=True)
            sums = np.zeros((len(first), width))
            np.add.at(sums, inverse, values)
            values = sums[np.argsort(first)]
        lists = {Head(layers[i // heads], i % heads): values[:, i] for i in range(width)}
        return HeadScores(lists, *grid, scored_layers=layers)
