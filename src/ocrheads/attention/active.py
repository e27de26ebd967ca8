"""The session the current forward passes run under, if any: what the attention function reads its requests from."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ocrheads.attention.session import AttentionSession

ACTIVE: ContextVar[AttentionSession | None] = ContextVar("ocrheads_attention_session", default=None)


def current_session() -> AttentionSession | None:
    return ACTIVE.get()
