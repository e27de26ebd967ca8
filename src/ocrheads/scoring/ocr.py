"""OCR scores: while a model writes an answer character, does a head's top key see that character's ink?

Per written answer token and head: hit when the argmax key of the token's row is an evidence token of the
answer characters it writes; value = c * hit, c the fraction of the answer written (METHOD.md 2.3); mass =
the row's attention on those evidence tokens (a soft score at no extra cost).
"""

from __future__ import annotations

import torch
from PIL import Image

from ocrheads.data.manifest import Sample
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.answers import answer_tokens, encode_samples, gold_tokens
from ocrheads.scoring.evidence import answer_units, evidence
from ocrheads.scoring.kind import Batch
from ocrheads.scoring.options import ScoringOptions
from ocrheads.scoring.passes import write_answers
from ocrheads.scoring.table import EntryTable, Outcome


def score_ocr_batch(
    adapter: ModelAdapter,
    samples: list[Sample],
    pages: list[list[Image.Image]],
    options: ScoringOptions,
    table: EntryTable,
) -> list[Outcome]:
    """Score one batch of image samples into `table`; returns each sample's outcome."""
    batch = encode_samples(adapter, samples, pages)
    images = adapter.image_tokens(batch, [[page.size for page in item] for item in pages])
    units = [answer_units(sample, options) for sample in samples]
    evidences = [evidence(u, item, options) for u, item in zip(units, images, strict=True)]
    length = adapter.image_key_length(batch)
    key_sets = torch.zeros(len(samples), max(1, *(len(e.atoms) for e in evidences)), length, dtype=torch.bool)
    for item, found in enumerate(evidences):
        for atom, positions in enumerate(found.positions):
            key_sets[item, atom, list(positions)] = True
    gold = gold_tokens(adapter, samples, options)
    written = write_answers(adapter, batch, options, gold=gold, key_sets=key_sets, layers=table.layers)
    outcomes = []
    for item, sample in enumerate(samples):
        tokens, c, text = answer_tokens(adapter, sample, written.tokens[item], len(units[item]), options)
        entries = 0
        for token in tokens:
            row = written.prompt_length + token.index - (1 if options.row == "producing" else 0)
            column = written.column(item, row)
            touching = torch.from_numpy(evidences[item].touching(token.units))
            if column is None or not touching.any():
                continue  # the last token's consuming row is never computed; blank characters have no evidence
            argmax = written.argmax[:, item, :, column]
            hit = evidences[item].hits(argmax, token.units, max(written.length, length))
            mass = written.mass[:, item, :, column, : len(touching)] @ touching.float()
            pad = written.padding[item]
            key = argmax - pad if adapter.image_keys == "sequence" else argmax  # cross: the image's key, from 0
            table.add(sample.id, token.index, row - pad, hit, key, mass, c, c * hit.float())
            entries += 1
        reason = "" if entries else _why_nothing(sample, text, tokens)
        outcomes.append(Outcome(sample.id, entries > 0, text, c, entries, reason))
    return outcomes


def _why_nothing(sample: Sample, text: str, tokens) -> str:
    """The reason, then this sample's details in parentheses: outcome summaries count reasons by the first part."""
    if not text:
        return "the model wrote nothing"
    if not tokens:
        return f"the answer is nowhere in what the model wrote (answer {sample.answer!r}, written {text[:80]!r})"
    return "no written answer token has evidence tokens (blank characters, or text outside what the model sees)"


def score_batch(adapter: ModelAdapter, batch: Batch, options: ScoringOptions, table: EntryTable) -> list[Outcome]:
    return score_ocr_batch(adapter, batch.samples, batch.pages, options, table)
