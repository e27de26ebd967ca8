"""Direct and chain-of-thought prompts, and the final answer parsed out of a chain-of-thought reply.

The direct prompt is the sample's question with its set's instruction: none for our synthetic sets (so the
prompt is the one scoring and the demo model use), lmms-eval's "single word or phrase" for real datasets.
The CoT prompt asks the model to say where the text is and what it reads before a last line "Answer: ...",
which is what is scored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ocrheads.eval.datasets import EvalSample

if TYPE_CHECKING:
    from ocrheads.models.base import ModelAdapter

PROMPTS = ("direct", "cot")
COT = (
    "First say where in the {where} the answer is written and read it out, step by step. "
    "Then give the final answer on the last line as 'Answer: <answer>'."
)
_FINAL = re.compile(r"answer\s*:\s*(.+)", re.IGNORECASE)


def question_text(sample: EvalSample, style: str, instruction: str = "") -> str:
    """The text of the question turn (evidence first for text samples, as in retrieval scoring)."""
    where = "document" if sample.images else "text"
    question = sample.question
    if style == "cot":
        question = f"{question}\n{COT.format(where=where)}"
    elif instruction:
        question = f"{question}\n{instruction}"
    return f"{sample.context}\n\n{question}" if sample.context else question


def encode_questions(adapter: ModelAdapter, samples: Sequence[EvalSample], style: str, instruction: str = ""):
    """One encoded batch of the samples' question turns (with their images), ready for the model."""
    prompts = [adapter.prompt(question_text(s, style, instruction), len(s.images)) for s in samples]
    return adapter.encode(prompts, [list(s.images) for s in samples])


def final_answer(reply: str, style: str) -> str:
    """The answer to score: the whole reply (direct), or what follows the last 'Answer:' (CoT; else the last line)."""
    reply = reply.strip()
    if style != "cot":
        return reply
    found = _FINAL.findall(reply)
    if found:
        return found[-1].strip()
    lines = [line for line in reply.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
