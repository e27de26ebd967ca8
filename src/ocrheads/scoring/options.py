"""Every method choice of scoring (DESIGN.md "Method choices"), with the paper code's choices as a preset."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ocrheads.errors import OcrHeadsError
from ocrheads.models.geometry import Rounding, Rule
from ocrheads.scoring.alignment import Alignment


class ScoringOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    row: Literal["producing", "consuming"] = "producing"  # the query row that writes a token, or that reads it back
    alignment: Alignment = "offsets"
    evidence_rule: Rule = "any"
    evidence_threshold: float = Field(0.0, ge=0, le=1)
    box_rounding: Rounding = "exact"  # "truncate": corners scaled to the resized page, then int() (paper code)
    argmax_keys: Literal["all", "prompt"] = "all"  # "prompt": keys before the last prompt token (paper code)
    retrieval: Literal["needle", "repeats"] = "needle"  # Wu et al.'s copy from the needle, or the paper code's
    answers: Literal["generated", "gold"] = "generated"  # score what the model writes, or teacher-force the answer
    max_new_tokens: int = Field(32, gt=0)
    min_correct: float = Field(0.0, ge=0, le=1)  # retrieval: skip samples whose written answer has c below this


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
