"""Run conditions x datasets x prompts, batch by batch, into `<out>/<experiment>/` (an ExperimentRun: its parts, then
every sample's predictions, and results per condition x dataset x prompt x metric: mean, bootstrap 95 % interval,
n, skipped), resuming where a run stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import torch

from ocrheads.attention import Edits, SinkRedistribution, attention_session, install
from ocrheads.devices import out_of_memory_named
from ocrheads.distributed import current_shard
from ocrheads.errors import OcrHeadsError
from ocrheads.eval.conditions import Condition
from ocrheads.eval.datasets import EvalSample, EvalSet
from ocrheads.eval.means import reference_means
from ocrheads.eval.metrics import ANLS_PRESETS, METRICS, estimate
from ocrheads.eval.prompts import encode_questions, final_answer
from ocrheads.eval.results import results_markdown
from ocrheads.eval.sinks import first_sinks, mass_sinks
from ocrheads.float32 import exact_float32
from ocrheads.models import ModelAdapter, ModelSpec
from ocrheads.run import ExperimentRun, RunDir, resumable
from ocrheads.run.start import open_run


@dataclass(frozen=True)
class Intervention:
    """What is done to a condition's heads: masked (zero output, uniform attention, or the head's mean output over
    the set's first `mean_samples` prompts), or sink-redistributed."""

    kind: Literal["mask", "sink"] = "mask"
    mode: Literal["zero", "uniform", "mean"] = "zero"
    mean_samples: int = 32  # mask mode mean: samples per set the head means are taken over
    beta: float = 0.4  # sink: the share of the sink's attention it keeps
    sinks: Literal["first", "mass"] = "first"  # sink: the first tokens, or keys detected by attention mass
    sink_tokens: int = 1  # sinks first: the first this many tokens of each sequence
    sink_threshold: float = 0.3  # sinks mass: the least share of the heads' attention a sink draws
    receivers: Literal["all", "image"] = "all"  # sink: where the removed mass goes


def edits_for(
    intervention: Intervention,
    condition: Condition,
    adapter: ModelAdapter,
    samples: list[EvalSample],
    batch,
    new: int,
    means: dict[int, torch.Tensor] | None = None,
) -> Edits:
    """The edits of one condition for one encoded batch that will write up to `new` tokens.

    `means` (layer -> (heads, head_dim)) are the set's reference means, needed by mask mode mean.
    """
    heads = condition.head_map()
    if not heads:
        return Edits()
    if intervention.kind == "mask":
        if intervention.mode == "mean":
            return Edits(mean={layer: (hs, means[layer][list(hs)]) for layer, hs in heads.items()})
        return Edits(zero=heads) if intervention.mode == "zero" else Edits(uniform=heads)
    length = batch["input_ids"].shape[1] + new
    if intervention.sinks == "first":
        sinks = first_sinks(batch["attention_mask"], intervention.sink_tokens, length)
    else:
        sinks = mass_sinks(adapter, batch, heads, intervention.sink_threshold, length)
    receivers = None
    if intervention.receivers == "image":
        if adapter.image_keys != "sequence":
            raise OcrHeadsError(f"sink receivers 'image': {adapter.family}'s image tokens are keys of its "
                                "cross-attention layers, not of the text; use --receivers all")  # fmt: skip
        receivers = torch.zeros_like(sinks)
        sizes = [[image.size for image in sample.images] for sample in samples]
        for item, images in enumerate(adapter.image_tokens(batch, sizes)):
            receivers[item, [p for image in images for p in image.positions()]] = True
    return Edits(sink=SinkRedistribution(heads, intervention.beta, sinks, receivers))


def _generate(adapter: ModelAdapter, samples: list[EvalSample], style: str, instruction: str, new: int, edits_of):
    batch = encode_questions(adapter, samples, style, instruction)
    with torch.no_grad(), attention_session(adapter.model, edits=edits_of(batch, new)):
        sequences = adapter.generate(batch, new)
    written = sequences[:, batch["input_ids"].shape[1] :]
    return adapter.processor.tokenizer.batch_decode(written, skip_special_tokens=True)


@exact_float32()
def evaluate(
    experiment: str,
    model: ModelAdapter | ModelSpec,
    conditions: Sequence[Condition],
    eval_sets: Sequence[EvalSet],
    out: str | Path,
    *,
    intervention: Intervention,
    prompts: Sequence[str] = ("direct",),
    max_new_tokens: int = 32,
    cot_max_new_tokens: int = 256,
    batch_size: int = 1,
    anls: str = "lmms-eval-docvqa",
    config: dict | None = None,
    stop_at_bad_page: bool = False,
    progress: bool = True,
) -> Path:
    """Every condition on every set with every prompt style; finished batches of an earlier run are kept. A sample
    whose page cannot be read is recorded as skipped, with why, and not run (`stop_at_bad_page`: the run stops).

    Given a ModelSpec, the run directory is checked before the weights are loaded."""
    experiment_run = RunDir(out).experiment(experiment)
    shard = current_shard()
    known = {
        "experiment": experiment,
        "model": model.name,
        **(config or {}),
        "anls": anls,
        "intervention": intervention.__dict__,
        "conditions": {c.name: [h.name for h in c.heads] for c in conditions},
        "datasets": {e.name: {"size": e.size, "source": e.source} for e in eval_sets},
        "prompts": list(prompts),
        "max_new_tokens": max_new_tokens,
        "cot_max_new_tokens": cot_max_new_tokens,
        "batch_size": batch_size,
    }
    adapter = open_run(experiment_run.folder, model, known, shard)
    install(adapter.model)
    metrics = METRICS | {"anls": partial(METRICS["anls"], options=ANLS_PRESETS[anls])}
    arms = [(c, e, p) for c in conditions for e in eval_sets for p in prompts]
    means = {}
    if intervention.kind == "mask" and intervention.mode == "mean":
        means = {e.name: reference_means(adapter, e, intervention.mean_samples, batch_size) for e in eval_sets}

    def work(condition: Condition, eval_set: EvalSet, style: str, start: int, path: Path) -> None:
        samples = eval_set.samples(range(start, min(start + batch_size, eval_set.size)), stop_at_bad_page)
        runnable = [s for s in samples if not s.skip]
        replies = []
        if runnable:
            edits_of = partial(edits_for, intervention, condition, adapter, runnable, means=means.get(eval_set.name))
            new = cot_max_new_tokens if style == "cot" else max_new_tokens
            what = f"{condition.name} / {eval_set.name} / {style}, samples {start} to {start + len(samples) - 1}"
            with out_of_memory_named(what, "--batch-size (or --cot-max-new-tokens, --max-pages)"):
                replies = _generate(adapter, runnable, style, eval_set.instruction, new, edits_of)
        experiment_run.write_part(path, _records(condition, eval_set, style, samples, iter(replies), metrics))

    parts = []  # every part of every arm, in order: part i belongs to rank i mod world size
    for condition, eval_set, style in arms:
        for number, start in enumerate(range(0, eval_set.size, batch_size)):
            path = experiment_run.part(condition.name, eval_set.name, style, number)
            parts.append((path, partial(work, condition, eval_set, style, start, path)))
    finish_run = partial(finish, experiment_run, arms, batch_size)
    resumable(parts, finish_run, shard, description=experiment, progress=progress)
    return experiment_run.folder


def _records(
    condition: Condition, eval_set: EvalSet, style: str, samples: list[EvalSample], replies, metrics
) -> list[dict]:
    records = []
    for sample in samples:
        record = {"condition": condition.name, "dataset": eval_set.name, "prompt": style, "id": sample.id}
        if sample.skip:
            records.append(record | {"skipped": sample.skip})
            continue
        reply = next(replies)
        answer = final_answer(reply, style)
        values = {name: metrics[name](answer, sample.answers) for name in eval_set.metrics}
        records.append(record | {"reply": reply, "answer": answer, "answers": list(sample.answers), "metrics": values})
    return records


def finish(experiment_run: ExperimentRun, arms: list[tuple[Condition, EvalSet, str]], batch_size: int) -> None:
    """Merge the parts into every sample's predictions and the results table; random arms of one size are also
    pooled."""
    rows, predictions = [], []
    pooled: dict[tuple[int, str, str], list[dict]] = {}
    metrics = {eval_set.name: eval_set.metrics for _, eval_set, _ in arms}
    for condition, eval_set, style in arms:
        records = [
            record
            for number in range(-(-eval_set.size // batch_size))
            for record in experiment_run.read_part(experiment_run.part(condition.name, eval_set.name, style, number))
        ]
        predictions += records
        arm_fields = {"condition": condition.name, "group": condition.group, "heads": len(condition.heads),
                      "seed": condition.seed, "dataset": eval_set.name, "prompt": style}  # fmt: skip
        rows += _summaries(arm_fields, eval_set.metrics, records)
        if condition.group == "random":
            pooled.setdefault((len(condition.heads), eval_set.name, style), []).extend(records)
    for (heads, dataset, style), records in pooled.items():
        arm_fields = {"condition": f"random-top{heads}-pooled", "group": "random", "heads": heads, "seed": None,
                      "dataset": dataset, "prompt": style}  # fmt: skip
        rows += _summaries(arm_fields, metrics[dataset], records)
    experiment_run.write_results(predictions, rows, results_markdown(rows))


def _summaries(arm_fields: dict, metrics: Sequence[str], records: list[dict]) -> list[dict]:
    scored = [r for r in records if "metrics" in r]
    rows = []
    for metric in metrics:
        found = estimate([r["metrics"][metric] for r in scored])
        interval = {"mean": found.mean, "low": found.low, "high": found.high, "n": found.n}
        rows.append(arm_fields | {"metric": metric, **interval, "skipped": len(records) - len(scored)})
    return rows
