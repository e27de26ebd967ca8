"""The scoring kinds, one object each (ocrheads.scoring.kind): the runner, the CLI, selection, analysis and the
report loop over this list. A new kind is a module of its own (its scoring code) and one entry here.

A kind's scoring code needs torch and transformers; this list does not, so that the command line's help, selection
and analysis start without them: each kind names its code, imported when a batch is first scored.

Two kinds have roles in the paper's findings, named here so that no other module spells a kind's name: the heads
that read text in images (READING) and the heads that copy text from the context (COPYING).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from ocrheads.errors import OcrHeadsError
from ocrheads.heads import ATTENTION, CROSS
from ocrheads.scoring.kind import ScoringKind
from ocrheads.scoring.options import CausalOptions, ScoringOptions, scoring_options
from ocrheads.scoring.table import CAUSAL_SCHEMA, SCHEMA, CausalTable, EntryTable


def _code(module: str, name: str) -> Callable:
    """`name` of `module`, imported at its first call."""

    def call(*args, **kwargs):
        return getattr(import_module(module), name)(*args, **kwargs)

    call.__qualname__ = f"{module}.{name}"
    return call


# What the two kinds scored from the answer's captured rows share: their options and presets, their table, and
# what to lower when a batch runs out of memory (generation's batch and length).
_ANSWER_ROWS = dict(
    options=ScoringOptions,
    presets=scoring_options,
    schema=SCHEMA,
    new_table=EntryTable,
    out_of_memory="--batch-size (or --max-new-tokens)",
)
OCR = ScoringKind(
    name="ocr",
    title="OCR heads",
    summary="while the model writes the answer, does a head's top key see the character's ink on the page",
    modality="image",
    needs_boxes=True,
    score_batch=_code("ocrheads.scoring.ocr", "score_batch"),
    per_sample=False,
    layer_kinds=(ATTENTION, CROSS),
    image_keys=True,
    **_ANSWER_ROWS,
)
RETRIEVAL = ScoringKind(
    name="retrieval",
    title="Retrieval heads",
    summary="while the model copies the answer from its text context, does a head's top key hold the token it writes",
    modality="text",
    needs_boxes=False,
    score_batch=_code("ocrheads.scoring.retrieval", "score_batch"),
    per_sample=True,
    **_ANSWER_ROWS,
)
CAUSAL = ScoringKind(
    name="causal",
    title="Causal heads",
    summary="how much the answer's log-probability drops when a head's output is ablated (estimated, or --exact)",
    modality=None,
    needs_boxes=False,
    options=CausalOptions,
    schema=CAUSAL_SCHEMA,
    new_table=CausalTable,
    score_batch=_code("ocrheads.scoring.causal", "score_batch"),
    per_sample=True,
    out_of_memory="--max-batch-tokens",
    layer_kinds=(ATTENTION, CROSS),
    prepare=_code("ocrheads.scoring.causal", "prepare_means"),
)

KINDS: dict[str, ScoringKind] = {kind.name: kind for kind in (OCR, RETRIEVAL, CAUSAL)}
NAMES: list[str] = list(KINDS)
READING, COPYING, EFFECT = OCR.name, RETRIEVAL.name, CAUSAL.name  # EFFECT: what ablating a head does to the answer


def scoring_kind(name: str) -> ScoringKind:
    if name not in KINDS:
        raise OcrHeadsError(f"unknown scoring kind {name!r}; kinds: {', '.join(NAMES)}")
    return KINDS[name]
