"""Causal head scores: how much each head's output matters for writing the answer.

For every answer token and every head, the change in the token's log-probability (or logit) when the head is
ablated (its output, the slice o_proj reads, set to zero or to its mean), teacher-forced on the answer:
- `estimate`: attribution patching (Nanda 2023; Kramár et al. 2024, AtP): one forward pass, then one backward pass
  per answer token, give for all heads at once the first-order term, gradient . (ablated - clean) summed over
  positions. The outputs and their gradients come from the registered attention function (HeadOutputs); each
  layer's gradient is reduced to (batch, heads) as soon as it arrives, so no layer's gradient is kept.
- `exact`: each head ablated in a forward pass of its own, batched over heads (each copy of the batch ablates a
  different head).
Ablation acts at every position, as `ocrheads mask` does.

Memory: a backward pass keeps every layer's activations (about 2.7 MB a token for Qwen2-VL-2B in bfloat16), so a
batch is scored in micro-batches of at most `max_batch_tokens` padded tokens, its items sorted by length so that
little of it is padding. Items are independent: the scores are those of one pass, up to float rounding.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from transformers import BatchEncoding

from ocrheads.attention import Edits, HeadOutputs, attention_session
from ocrheads.data.manifest import Sample, open_pages
from ocrheads.devices import to_cpu
from ocrheads.errors import OcrHeadsError
from ocrheads.eval.means import prompt_means
from ocrheads.models.base import ModelAdapter
from ocrheads.scoring.answers import encode_samples, gold_ids
from ocrheads.scoring.kind import Batch, ScoringKind
from ocrheads.scoring.passes import append_tokens, until_end
from ocrheads.scoring.table import CAUSAL_SCHEMA, CausalTable, Outcome

Ablation = Literal["zero", "mean"]
Metric = Literal["logprob", "logit"]
MAX_BATCH_TOKENS = 8192  # padded tokens of one attribution pass: about 22 GB of activations for the 2B shape


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
    exact: bool = Field(False, description="also ablate each head in its own pass (validation), and keep both")
    per_token: bool = Field(False, description="one estimate per answer token (a backward pass each)")
    max_new_tokens: int = Field(32, gt=0, description="tokens a generated answer may take")
    mean_samples: int = Field(32, gt=0, description="mean ablation: samples the means are taken over")
    heads_per_pass: int | None = Field(
        None, gt=0, description="exact: copies of the batch per pass (default: a layer's heads)"
    )


@dataclass
class TeacherForced:
    """A batch with each item's answer appended, and where its answer tokens are predicted."""

    inputs: dict
    rows: torch.Tensor  # (batch, A) the row whose logits predict answer token j
    targets: torch.Tensor  # (batch, A) answer token ids (0 where an item's answer is shorter)
    valid: torch.Tensor  # (batch, A) bool


def teacher_forced(batch: BatchEncoding, answers: list[list[int]]) -> TeacherForced:
    size, prompt = batch["input_ids"].shape
    longest = max(len(ids) for ids in answers)
    targets = torch.tensor([ids + [0] * (longest - len(ids)) for ids in answers])
    valid = torch.tensor([[True] * len(ids) + [False] * (longest - len(ids)) for ids in answers])
    rows = torch.arange(prompt - 1, prompt - 1 + longest).expand(size, -1)
    return TeacherForced(append_tokens(batch, targets, valid.long()), rows, targets, valid)


def answer_metric(logits: torch.Tensor, forced: TeacherForced, metric: Metric) -> torch.Tensor:
    """(batch, A) log-probability (or logit) of each answer token at the row that predicts it; 0 where invalid.

    `logits` may hold only the last rows of the sequence (logits_to_keep), as long as the answer's rows are there."""
    rows = forced.rows.to(logits.device) - (forced.inputs["input_ids"].shape[1] - logits.shape[1])
    picked = logits.gather(1, rows[..., None].expand(-1, -1, logits.shape[-1]))
    picked = picked.to(torch.promote_types(picked.dtype, torch.float32))  # float32 at least; float64 stays
    if metric == "logprob":
        picked = picked.log_softmax(-1)
    values = picked.gather(2, forced.targets.to(logits.device)[..., None]).squeeze(-1)
    return torch.where(forced.valid.to(values.device), values, 0.0)


def _forward_metric(adapter: ModelAdapter, forced: TeacherForced, metric: Metric) -> torch.Tensor:
    """The answer's metric from one forward pass; logits only for the answer's rows (the sequence's last A + 1)."""
    logits = adapter.model(**forced.inputs, use_cache=False, logits_to_keep=forced.targets.shape[1] + 1).logits
    return answer_metric(logits, forced, metric)


def estimate(
    adapter: ModelAdapter,
    forced: TeacherForced,
    ablation: Ablation = "zero",
    means: dict[int, torch.Tensor] | None = None,
    metric: Metric = "logprob",
    per_token: bool = True,
) -> torch.Tensor:
    """(batch, A, layers, heads): first-order change of each answer token's metric when each head is ablated; with
    `per_token` False, (batch, 1, layers, heads) for the whole answer's metric, from a single backward pass (per
    token it takes one backward pass per answer token)."""
    layers, _ = adapter.grid
    reduced: dict[tuple[int, int], torch.Tensor] = {}  # (token, layer) -> (batch, heads), on the layer's device
    current = {"token": 0}

    def reduce(layer: int, clean: torch.Tensor, gradient: torch.Tensor) -> None:
        direction = _direction(clean, ablation, means, layer)
        reduced[current["token"], layer] = (gradient.float() * direction).sum((1, 3))

    with (
        torch.enable_grad(),
        _frozen(adapter.model),
        attention_session(adapter.model, head_outputs=HeadOutputs(reduce)) as session,
    ):
        values = _forward_metric(adapter, forced, metric)
        if not per_token:
            values = values.sum(1, keepdim=True)
        anchors = [session.head_outputs[layer].anchor for layer in range(layers)]
        for token in range(values.shape[1]):
            current["token"] = token
            torch.autograd.grad(values[:, token].sum(), anchors, retain_graph=token < values.shape[1] - 1)
    found = torch.stack(
        [
            torch.stack([to_cpu(reduced[token, layer]) for layer in range(layers)], 1)
            for token in range(values.shape[1])
        ],
        1,
    )
    return found * forced.valid[..., None, None] if per_token else found


@contextmanager
def _frozen(model: torch.nn.Module):
    """No weight needs a gradient while estimating: the graph then starts at the first head outputs (the vision
    tower and embeddings build none), and no weight gradient is computed."""
    wanted = [parameter for parameter in model.parameters() if parameter.requires_grad]
    for parameter in wanted:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in wanted:
            parameter.requires_grad_(True)


def _direction(clean: torch.Tensor, ablation: Ablation, means: dict[int, torch.Tensor] | None, layer: int):
    """ablated - clean for every position and head, (batch, Q, heads, head_dim) in float32."""
    if ablation == "zero":
        return -clean.float()
    return means[layer].to(clean.device).float()[None, None] - clean.float()


def exact(
    adapter: ModelAdapter,
    forced: TeacherForced,
    ablation: Ablation = "zero",
    means: dict[int, torch.Tensor] | None = None,
    metric: Metric = "logprob",
    heads_per_pass: int | None = None,
) -> torch.Tensor:
    """(batch, A, layers, heads): each answer token's metric with each head ablated, minus the clean metric.

    Each pass holds `heads_per_pass` copies of the batch (default: all heads of a layer), copy i ablating head i."""
    layers, heads = adapter.grid
    size = forced.targets.shape[0]
    heads_per_pass = heads_per_pass or heads
    with torch.no_grad():
        with attention_session(adapter.model):
            clean = _forward_metric(adapter, forced, metric)
        found = torch.zeros(*clean.shape, layers, heads)
        for layer in range(layers):
            for first in range(0, heads, heads_per_pass):
                chosen = list(range(first, min(first + heads_per_pass, heads)))
                copies = _repeat(forced, len(chosen))
                mask = torch.zeros(len(chosen) * size, heads, dtype=torch.bool)
                for copy, head in enumerate(chosen):
                    mask[copy * size : (copy + 1) * size, head] = True
                mean = means[layer] if ablation == "mean" else None
                with attention_session(adapter.model, edits=Edits(per_item={layer: (mask, mean)})):
                    ablated = _forward_metric(adapter, copies, metric).view(len(chosen), size, -1)
                found[:, :, layer, first : first + len(chosen)] = (ablated - clean[None]).permute(1, 2, 0).cpu()
    return found * forced.valid[..., None, None]


def _repeat(forced: TeacherForced, copies: int) -> TeacherForced:
    """The batch `copies` times over, copy-major (per-image tensors such as pixel values follow their items)."""
    inputs = {name: torch.cat([v] * copies) if isinstance(v, torch.Tensor) else v for name, v in forced.inputs.items()}
    return TeacherForced(inputs, forced.rows.repeat(copies, 1), forced.targets.repeat(copies, 1),
                         forced.valid.repeat(copies, 1))  # fmt: skip


def _answers(adapter: ModelAdapter, batch: BatchEncoding, samples: list[Sample], options: CausalOptions):
    tokenizer = adapter.processor.tokenizer
    if options.answers == "gold":
        return gold_ids(adapter, samples)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        written = adapter.model.generate(**batch, max_new_tokens=options.max_new_tokens, do_sample=False,
                                         pad_token_id=pad)  # fmt: skip
    prompt = batch["input_ids"].shape[1]
    return [until_end(ids, adapter.model, tokenizer) for ids in written[:, prompt:].tolist()]


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
        scored.update(zip(group, _score_group(adapter, encoded, chosen, options, means), strict=True))
    for item in range(len(samples)):
        _, estimates, measured = scored[item]
        if estimates is not None:
            table.add(samples[item].id, estimates, measured, whole_answer=not options.per_token)
    return [scored[item][0] for item in range(len(samples))]


def _score_group(adapter: ModelAdapter, batch: BatchEncoding, samples: list[Sample], options: CausalOptions, means):
    """(outcome, estimates, exact changes or None) per item of one micro-batch; estimates None where not scored."""
    answers = _answers(adapter, batch, samples, options)
    outcomes = [_outcome(adapter, s, ids, options) for s, ids in zip(samples, answers, strict=True)]
    if not any(answers):
        return [(outcome, None, None) for outcome in outcomes]
    forced = teacher_forced(batch, answers)
    try:
        estimates = estimate(adapter, forced, options.ablation, means, options.metric, options.per_token)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as err:
        raise OcrHeadsError(
            f"the model gives no gradients ({str(err).splitlines()[0]}); its attribution estimate cannot be taken"
        ) from None
    measured = None
    if options.exact:
        measured = exact(adapter, forced, options.ablation, means, options.metric, options.heads_per_pass)
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
    picked = samples[: options.mean_samples]
    batches = (
        encode_samples(adapter, chunk, [open_pages(data, sample) for sample in chunk])
        for chunk in (picked[i : i + batch_size] for i in range(0, len(picked), batch_size))
    )
    return prompt_means(adapter, batches)


def _score(adapter: ModelAdapter, batch: Batch, options: CausalOptions, table: CausalTable) -> list[Outcome]:
    return score_causal_batch(adapter, batch.samples, batch.pages, options, table, batch.prepared,
                              batch.max_batch_tokens or MAX_BATCH_TOKENS)  # fmt: skip


CAUSAL = ScoringKind(
    name="causal",
    title="Causal heads",
    summary="how much the answer's log-probability drops when a head's output is ablated (estimated, or --exact)",
    modality=None,
    needs_boxes=False,
    options=CausalOptions,
    schema=CAUSAL_SCHEMA,
    new_table=CausalTable,
    score_batch=_score,
    per_sample=True,
    out_of_memory="--max-batch-tokens",
    prepare=prepare_means,
)
