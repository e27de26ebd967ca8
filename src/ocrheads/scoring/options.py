"""Every method choice of scoring (DESIGN.md "Method choices"), with the paper code's choices as a preset; and those of
causal scoring. Plain data, without torch: the command line's help and the run's config read them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


PAPER_CODE = "paper-code"  # the preset of the paper code's choices (per family, also its prompts and decoding)
PRESETS = {
    "default": {},
    PAPER_CODE: {
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


Ablation = Literal["zero", "mean"]
Metric = Literal["logprob", "logit"]
MAX_BATCH_TOKENS = 8192  # padded tokens of one attribution pass: 20 GiB with the 2B shape's weights, 49 GiB with 7B's
IG_STEPS = 8
EXACT_TOP = 12  # the two-stage search's heads per sample: 7-9 of exact's top 10 on the demo model (BENCHMARKS.md)


class CausalOptions(BaseModel):
    """How causal scores are taken (pinned in the run's config): how much each head's output matters for the
    answer, gold by default."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ablation: Ablation = Field(
        "zero", description="what an ablated head outputs: zero, or its mean output over the set's prompts"
    )
    metric: Metric = Field("logprob", description="of each answer token: its log-probability, or its logit")
    answers: Literal["gold", "generated"] = Field(
        "gold", description="teacher-force the gold answer, or what the model writes"
    )
    method: Literal["atp", "ig"] = Field(
        "atp",
        description="the estimate: atp, first order (one forward and backward pass); ig, integrated gradients along "
        "the ablation path (--steps passes)",
    )
    steps: int | None = Field(None, gt=0, description=f"ig: points on the ablation path (default {IG_STEPS})")
    exact: bool = Field(False, description="also ablate each head in its own pass (validation), and keep both")
    exact_top: int = Field(
        EXACT_TOP,
        ge=0,
        description="two-stage: also ablate each sample's N heads with the largest estimated drop, and score them by "
        "what ablation measures (0: the estimate alone)",
    )
    per_token: bool = Field(False, description="one estimate per answer token (a backward pass each)")
    max_new_tokens: int = Field(32, gt=0, description="tokens a generated answer may take")
    mean_samples: int = Field(32, gt=0, description="mean ablation: samples the means are taken over")
    heads_per_pass: int | None = Field(
        None, gt=0, description="exact: copies of the batch per pass (default: a layer's heads)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> CausalOptions:
        if self.steps is not None and self.method != "ig":
            raise ValueError("steps apply to the ig method only: add --method ig, or drop --steps")
        if self.exact and "exact_top" in self.model_fields_set:
            raise ValueError("give --exact (every head) or --exact-top N (the top N), not both")
        return self

    @property
    def path_steps(self) -> int:
        """Points on the ablation path the estimate takes: 1 for atp."""
        return 1 if self.method == "atp" else self.steps or IG_STEPS
