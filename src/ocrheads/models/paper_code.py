"""What the paper's code sent a family's model and how it decoded, as `--preset paper-code` sets it (METHOD.md
2.1-2.3). Each adapter of a family the paper ran declares one; plain data, so the command line resolves the preset
from a checkpoint's config before any weights load."""

from __future__ import annotations

from dataclasses import dataclass, field

from ocrheads.models.decoding import EOS


@dataclass(frozen=True)
class PaperCode:
    prompt_format: str  # how prompts are written: "chat" (the chat template) or the family's raw "paper" format
    pixels: dict = field(default_factory=dict)  # pixel options of the paper's preprocessing
    max_new_tokens: int = 32
    stop_tokens: tuple[int | str, ...] = (EOS,)  # "eos": the checkpoint's own end-of-sequence ids
