"""Retrieval scores on text samples: does a head copy the token being written from the answer's span?

`needle` (default, Wu et al. 2024): for each written answer token, the head hits when its row's argmax key lies
in the context's answer span and holds the very token being written; a sample scores hits / span tokens.
`repeats` (the paper code, METHOD.md 2.4): every position of prompt and answer whose id is an answer token id,
read on its own row, hits when its argmax key holds the same token; a sample scores hits / positions.
"""

from __future__ import annotations

import torch

from ocrheads.data.manifest import Sample
from ocrheads.devices import to_cpu
from ocrheads.errors import OcrHeadsError
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.answers import answer_tokens, gold_ids, gold_tokens, sample_prompt
from ocrheads.scoring.kind import Batch
from ocrheads.scoring.options import ScoringOptions
from ocrheads.scoring.passes import write_answers
from ocrheads.scoring.table import EntryTable, Outcome


def needle_positions(adapter: ModelAdapter, prompts: list[str], samples: list[Sample], input_ids) -> list[list[int]]:
    """Token positions (in the padded batch) whose text overlaps each sample's answer span in its context."""
    tokenizer = adapter.processor.tokenizer
    texts = [adapter.tokenized_text(prompt) for prompt in prompts]
    encoded = tokenizer(texts, return_offsets_mapping=True, padding=True, return_tensors="pt")
    if not torch.equal(encoded["input_ids"], input_ids):
        raise OcrHeadsError("the tokenizer's ids differ from the processor's for a text prompt; cannot find the needle")
    needles = []
    for text, sample, offsets in zip(texts, samples, encoded["offset_mapping"].tolist(), strict=True):
        start = text.find(sample.context)
        if start < 0:
            raise OcrHeadsError(f"sample {sample.id}: the chat template changed the context text; cannot find it")
        low, high = start + sample.answer_span[0], start + sample.answer_span[1]
        needles.append([i for i, (a, b) in enumerate(offsets) if a < b and a < high and b > low])
    return needles


def copy_hits(ids: torch.Tensor, argmax: torch.Tensor, target: int, needle: torch.Tensor | None) -> torch.Tensor:
    """Heads (argmax: their top key positions) that copy: the top key holds token `ids[target]`, and, when a
    `needle` (positions) is given, lies inside it. Keys beyond `ids` (padding room) never hold the token."""
    inside = argmax < len(ids)
    copied = inside & (ids[argmax.clamp(max=len(ids) - 1)] == ids[target])
    return copied & torch.isin(argmax, needle) if needle is not None else copied


def score_retrieval_batch(
    adapter: ModelAdapter, samples: list[Sample], options: ScoringOptions, table: EntryTable
) -> list[Outcome]:
    prompts = [sample_prompt(adapter, sample) for sample in samples]
    batch = adapter.encode(prompts, [[] for _ in samples])
    input_ids = to_cpu(batch["input_ids"])  # needles, repeats and hits are read on the CPU (devices.py)
    needles = needle_positions(adapter, prompts, samples, input_ids)
    key_sets = torch.zeros(len(samples), 1, input_ids.shape[1], dtype=torch.bool)
    for item, positions in enumerate(needles):
        key_sets[item, 0, positions] = True
    answer_ids = gold_ids(adapter, samples)  # each answer's own tokens, which the paper code's repeats look for
    extra = _repeat_rows(answer_ids, input_ids) if options.retrieval == "repeats" else None
    gold = gold_tokens(adapter, samples, options)
    written = write_answers(
        adapter, batch, options, gold=gold, key_sets=key_sets, extra_rows=extra, layers=table.layers
    )
    outcomes = []
    for item, sample in enumerate(samples):
        ids = torch.tensor(input_ids[item].tolist() + written.tokens[item])
        needle = torch.tensor(needles[item], dtype=torch.long)
        tokens, c, text = answer_tokens(adapter, sample, written.tokens[item], len(sample.answer), options)
        if not tokens or c < options.min_correct:
            reason = f"too little of the answer was written ({c:.0%} of {sample.answer!r} in {text[:80]!r})"
            outcomes.append(Outcome(sample.id, False, text, c, 0, reason))
            continue
        if options.retrieval == "needle":
            back = 1 if options.row == "producing" else 0
            rows = [(written.prompt_length + t.index - back, written.prompt_length + t.index) for t in tokens]
            denominator = len(needles[item])
        else:
            prompt_rows = [r for r in extra[item].tolist() if r >= 0]
            repeats = set(answer_ids[item])
            written_rows = [written.prompt_length + n for n, t in enumerate(written.tokens[item]) if t in repeats]
            rows = [(r, r) for r in prompt_rows + written_rows]
            denominator = len(rows)
        entries = 0
        for row, target in rows:
            column = written.column(item, row)
            if column is None:
                continue
            argmax = written.argmax[:, item, :, column]
            hit = copy_hits(ids, argmax, target, needle if options.retrieval == "needle" else None)
            mass = written.mass[:, item, :, column, 0]
            pad, token = written.padding[item], target - written.prompt_length  # token < 0: a prompt position
            table.add(sample.id, token, row - pad, hit, argmax - pad, mass, c, hit / denominator)
            entries += 1
        outcomes.append(Outcome(sample.id, entries > 0, text, c, entries, "" if entries else "no row to score"))
    return outcomes


def _repeat_rows(answer_ids: list[list[int]], input_ids: torch.Tensor) -> torch.Tensor:
    """Prompt positions holding an answer token id, per sample, -1 padded (the paper code reads those rows too)."""
    rows = []
    for ids, answer in zip(input_ids, answer_ids, strict=True):
        rows.append(torch.nonzero(torch.isin(ids, torch.tensor(answer))).flatten().tolist())
    width = max(1, *(len(r) for r in rows))
    return torch.tensor([r + [-1] * (width - len(r)) for r in rows])


def score_batch(adapter: ModelAdapter, batch: Batch, options: ScoringOptions, table: EntryTable) -> list[Outcome]:
    return score_retrieval_batch(adapter, batch.samples, options, table)
