"""Causal head scores: how much each head's output matters for writing the answer (the maths in attribution.py).

Per sample, answer token (or the whole answer) and head, the change in the answer's log-probability (or logit) when
the head is ablated, teacher-forced: estimated for every head (`method` atp, or ig with `steps`), and measured by
ablation for every head (`exact`) or for each sample's `exact_top` heads with the largest estimated drop (a
two-stage search: the screen finds the heads, ablation measures them).

Memory: a backward pass keeps every layer's activations (measured: about 2.0 MiB a token for the Qwen2-VL-2B
shape, 4.2 MiB for 7B, in bfloat16), so a batch is scored in micro-batches of at most `max_batch_tokens` padded
tokens, its items sorted by length so that little of it is padding. Items are independent: the scores are those
of one pass, up to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import BatchEncoding

from ocrheads.data.manifest import Sample, open_samples
from ocrheads.devices import to_cpu
from ocrheads.errors import DataError, OcrHeadsError
from ocrheads.eval.means import prompt_means
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.answers import encode_samples, gold_ids
from ocrheads.scoring.attribution import estimate, exact, largest_drops, teacher_forced
from ocrheads.scoring.kind import Batch
from ocrheads.scoring.options import MAX_BATCH_TOKENS, CausalOptions
from ocrheads.scoring.table import CausalTable, Outcome


def _answers(adapter: ModelAdapter, batch: BatchEncoding, samples: list[Sample], options: CausalOptions):
    if options.answers == "gold":
        return gold_ids(adapter, samples)
    with torch.no_grad():
        written = adapter.generate(batch, options.max_new_tokens)
    prompt = batch["input_ids"].shape[1]
    return [adapter.until_end(ids) for ids in written[:, prompt:].tolist()]


def _outcome(adapter: ModelAdapter, sample: Sample, ids: list[int], options: CausalOptions) -> Outcome:
    written = adapter.processor.tokenizer.decode(ids, skip_special_tokens=True)
    if ids:
        return Outcome(sample.id, True, written, 1.0, len(ids))
    what = f"the gold answer {sample.answer!r}" if options.answers == "gold" else "the model wrote nothing"
    return Outcome(sample.id, False, written, 0.0, 0, f"no answer tokens ({what})")


def micro_batches(lengths: list[int], budget: int) -> list[list[int]]:
    """Item indices grouped so that each group's padded size (its items times its longest) is at most `budget`
    tokens, shortest items together so that little is padding; an item longer than the budget is a group alone."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if groups and (len(groups[-1]) + 1) * lengths[index] <= budget:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def score_causal_batch(
    adapter: ModelAdapter,
    samples: list[Sample],
    pages: list[list[Image.Image]],
    options: CausalOptions,
    table: CausalTable,
    means: dict[int, torch.Tensor] | None,
    max_batch_tokens: int = MAX_BATCH_TOKENS,
) -> list[Outcome]:
    """Score one batch into `table`, in micro-batches of at most `max_batch_tokens` padded tokens (prompt and answer
    room); a sample whose answer gives no tokens is not scored, with the reason."""
    batch = encode_samples(adapter, samples, pages)
    room = [len(ids) for ids in gold_ids(adapter, samples)] if options.answers == "gold" else None
    prompts = to_cpu(batch["attention_mask"]).sum(1).tolist()
    lengths = [p + (room[i] if room else options.max_new_tokens) for i, p in enumerate(prompts)]
    groups = micro_batches(lengths, max_batch_tokens)
    if len(groups) == 1:
        groups = [list(range(len(samples)))]  # the batch as encoded
    scored: dict[int, tuple] = {}
    for group in groups:
        chosen = [samples[i] for i in group]
        encoded = batch if len(groups) == 1 else encode_samples(adapter, chosen, [pages[i] for i in group])
        scored.update(zip(group, _score_group(adapter, encoded, chosen, options, means, table.layers), strict=True))
    for item in range(len(samples)):
        _, estimates, measured = scored[item]
        if estimates is not None:
            table.add(samples[item].id, estimates, measured, whole_answer=not options.per_token)
    return [scored[item][0] for item in range(len(samples))]


def _score_group(
    adapter: ModelAdapter, batch: BatchEncoding, samples: list[Sample], options: CausalOptions, means, layers: list[int]
):
    """(outcome, estimates, exact changes or None) per item of one micro-batch, over the heads of `layers`; estimates
    None where not scored."""
    answers = _answers(adapter, batch, samples, options)
    outcomes = [_outcome(adapter, s, ids, options) for s, ids in zip(samples, answers, strict=True)]
    if not any(answers):
        return [(outcome, None, None) for outcome in outcomes]
    forced = teacher_forced(batch, answers, adapter.written_token_types)
    try:
        estimates = estimate(adapter, forced, options.ablation, means, options.metric, options.per_token,
                             options.path_steps, layers)  # fmt: skip
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as err:
        raise OcrHeadsError(
            f"the model gives no gradients ({str(err).splitlines()[0]}); its attribution estimate cannot be taken"
        ) from None
    measured = None
    if options.exact or options.exact_top:
        chosen = None if options.exact else largest_drops(estimates, options.exact_top)
        measured = exact(adapter, forced, options.ablation, means, options.metric, options.heads_per_pass, chosen,
                         layers)  # fmt: skip
        measured = measured if options.per_token else measured.sum(1, keepdim=True)
    results = []
    for item, (outcome, ids) in enumerate(zip(outcomes, answers, strict=True)):
        n = len(ids) if options.per_token else 1
        found = (estimates[item, :n], measured[item, :n] if measured is not None else None) if ids else (None, None)
        results.append((outcome, *found))
    return results


def prepare_means(adapter: ModelAdapter, data: Path, samples: list[Sample], options: CausalOptions, batch_size: int):
    """Mean ablation's reference, once per run: each head's mean output over the prompts of the first samples (the
    same on every rank and every resume: the samples are fixed); None for zero ablation."""
    if options.ablation != "mean":
        return None
    picked, pages, _ = open_samples(data, samples[: options.mean_samples])  # a sample with a bad page is left out
    if not picked:
        raise DataError(f"none of the first {options.mean_samples} samples of {data} has readable pages, so there is "
                        "nothing to take head means over; raise --mean-samples or fix the dataset")  # fmt: skip
    batches = (
        encode_samples(adapter, picked[i : i + batch_size], pages[i : i + batch_size])
        for i in range(0, len(picked), batch_size)
    )
    return prompt_means(adapter, batches)


def score_batch(adapter: ModelAdapter, batch: Batch, options: CausalOptions, table: CausalTable) -> list[Outcome]:
    return score_causal_batch(adapter, batch.samples, batch.pages, options, table, batch.prepared,
                              batch.max_batch_tokens or MAX_BATCH_TOKENS)  # fmt: skip
