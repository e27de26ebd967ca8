"""One registered attention function that captures and edits heads, driven by an attention session."""

from ocrheads.attention.requests import Capture, CapturedRows, Edits, OutputSums, SinkRedistribution
from ocrheads.attention.session import AttentionSession, attention_session, install

__all__ = [
    "AttentionSession",
    "Capture",
    "CapturedRows",
    "Edits",
    "OutputSums",
    "SinkRedistribution",
    "attention_session",
    "install",
]
