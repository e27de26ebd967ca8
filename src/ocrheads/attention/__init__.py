"""One registered attention function that captures and edits heads, driven by an attention session."""

from ocrheads.attention.requests import Capture, CapturedRows, Edits, SinkRedistribution, head_map
from ocrheads.attention.session import AttentionSession, attention_session, install

__all__ = [
    "AttentionSession",
    "Capture",
    "CapturedRows",
    "Edits",
    "SinkRedistribution",
    "attention_session",
    "head_map",
    "install",
]
