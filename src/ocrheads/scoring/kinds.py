"""The scoring kinds, one object each (ocrheads.scoring.kind): the runner, the CLI, selection, analysis and the
report loop over this list. A new kind is a module of its own and one line here.

Two kinds have roles in the paper's findings, named here so that no other module spells a kind's name: the heads
that read text in images (READING) and the heads that copy text from the context (COPYING).
"""

from __future__ import annotations

from ocrheads.errors import OcrHeadsError
from ocrheads.scoring.causal import CAUSAL
from ocrheads.scoring.kind import ScoringKind
from ocrheads.scoring.ocr import OCR
from ocrheads.scoring.retrieval import RETRIEVAL

KINDS: dict[str, ScoringKind] = {kind.name: kind for kind in (OCR, RETRIEVAL, CAUSAL)}
NAMES: list[str] = list(KINDS)
READING, COPYING, EFFECT = OCR.name, RETRIEVAL.name, CAUSAL.name  # EFFECT: what ablating a head does to the answer


def scoring_kind(name: str) -> ScoringKind:
    if name not in KINDS:
        raise OcrHeadsError(f"unknown scoring kind {name!r}; kinds: {', '.join(NAMES)}")
    return KINDS[name]
