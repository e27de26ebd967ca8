"""One registered attention function that captures and edits heads, driven by an attention session."""

from ocrheads.attention.install import install, use_text_attention
from ocrheads.attention.requests import (
    AttentionInputs,
    Capture,
    CapturedRows,
    Edits,
    HeadOutputs,
    KeptOutput,
    OutputSums,
    SinkRedistribution,
    kept_logits,
    last_logits,
)
from ocrheads.attention.session import AttentionSession, attention_session

__all__ = [
    "AttentionInputs",
    "AttentionSession",
    "Capture",
    "CapturedRows",
    "Edits",
    "HeadOutputs",
    "KeptOutput",
    "OutputSums",
    "SinkRedistribution",
    "attention_session",
    "install",
    "kept_logits",
    "last_logits",
    "use_text_attention",
]
