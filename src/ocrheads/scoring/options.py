"""Every method choice of scoring (DESIGN.md "Method choices"), with the paper code's choices as a preset."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import Rounding, Rule
from ocrheads.scoring.alignment import Alignment


class ScoringOptions(BaseModel):
    """How OCR and retrieval scores are taken (pinned in the run's config); --preset paper-code sets the paper
    code's choices."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    row: Literal["producing", "consuming"] = Field(
        "producing", description="the query row that writes a token, or that reads it back (paper code)"
    )
    alignment: Alignment = Field("offsets", description="answer tokens to characters by offsets, or by position")
    evidence_rule: Rule = Field("any", description="which image tokens see a character's box")
    evidence_threshold: float = Field(0.0, ge=0, le=1, description="coverage or IoU threshold of the evidence rule")
    box_rounding: Rounding = Field(
        "exact", description="truncate: corners scaled to the resized page, then int() (paper code)"
    )
    argmax_keys: Literal["all", "prompt"] = Field(
        "all", description="prompt: keys before the last prompt token only (paper code)"
    )
    retrieval: Literal["needle", "repeats"] = Field(
        "needle", description="Wu et al.'s copy from the needle, or the paper code's repeated tokens"
    )
    answers: Literal["generated", "gold"] = Field(
        "generated", description="score what the model writes, or teacher-force the answer"
    )
    max_new_tokens: int = Field(32, gt=0, description="tokens a generated answer may take")
    min_correct: float = Field(
        0.0, ge=0, le=1, description="retrieval: skip samples whose written answer has c below this"
    )


PRESETS = {
    "default": {},
    "paper-code": {
        "row": "consuming",
        "alignment": "position",
        "evidence_rule": "coverage",
        "evidence_threshold": 0.001,  # tile weight > 0.1 percent of the box area (METHOD.md 2.2)
        "box_rounding": "truncate",
        "argmax_keys": "prompt",
        "retrieval": "repeats",
    },
}


def scoring_options(preset: str = "default", **overrides) -> ScoringOptions:
    if preset not in PRESETS:
        raise OcrHeadsError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    return ScoringOptions(**{**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}})
