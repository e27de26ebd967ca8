"""Score a whole dataset into a run directory, batch by batch, resuming where an interrupted run stopped.

Layout of `<run>/<kind>/` (kind: ocr, retrieval or causal):
  config.yaml      everything that determines the result; a rerun with a different config is refused
  parts/           one Parquet part (and its outcomes) per finished batch; a part exists only once complete
  scores.parquet   the tidy table: one row per (sample, scored token, layer, head); causal rows hold the estimated
                   (and measured) change of the answer token's metric when the head is ablated
  scores.json      per-head score lists in the paper's reference format {"l{L}_h{H}": [...]}
  outcomes.jsonl   every sample: scored or not, what it wrote, c, and why not
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.progress import Progress

from ocrheads.atomic import atomic_write_text
from ocrheads.attention import install
from ocrheads.data.manifest import Sample, manifest_sha256, open_page, read_manifest
from ocrheads.devices import out_of_memory_named
from ocrheads.distributed import current_shard
from ocrheads.errors import DataError
from ocrheads.eval.means import prompt_means
from ocrheads.heads import Head, HeadScores
from ocrheads.models import ModelAdapter, ModelSpec
from ocrheads.run import open_run, write_parquet
from ocrheads.scoring.causal import MAX_BATCH_TOKENS, CausalOptions, encode_samples, score_causal_batch
from ocrheads.scoring.ocr import score_ocr_batch
from ocrheads.scoring.options import ScoringOptions
from ocrheads.scoring.retrieval import score_retrieval_batch
from ocrheads.scoring.table import CAUSAL_SCHEMA, SCHEMA, CausalTable, EntryTable, Outcome

Kind = Literal["ocr", "retrieval", "causal"]


def _check_samples(kind: Kind, samples: list[Sample], data: Path) -> None:
    if not samples:
        raise DataError(f"{data} holds no samples; generate some with `ocrheads data ...`")
    wanted = {"ocr": "image", "retrieval": "text"}.get(kind, samples[0].modality)
    wrong = next((s for s in samples if s.modality != wanted), None)
    if wrong is not None:
        needs = "samples of one modality" if kind == "causal" else f"{wanted} samples"
        raise DataError(
            f"{kind} scoring needs {needs}, but {wrong.id} in {data} is {wrong.modality}; "
            f"generate the dataset with --modality {wanted}"
        )
    if kind == "ocr":
        boxless = next((s for s in samples if not any(c.box for c in s.answer_chars)), None)
        if boxless is not None:
            raise DataError(f"sample {boxless.id} in {data} has no answer boxes; OCR scores need character boxes")


def score(
    kind: Kind,
    model: ModelAdapter | ModelSpec,
    data: str | Path,
    out: str | Path,
    options: ScoringOptions | CausalOptions,
    *,
    model_name: str = "",
    batch_size: int = 1,
    max_batch_tokens: int = MAX_BATCH_TOKENS,
    progress: bool = True,
) -> Path:
    """Score every sample of `data` into `out/kind/`; finished batches of an earlier run are kept, not redone.

    Given a ModelSpec, the data and the run directory are checked before the weights are loaded. Causal scores take
    each batch in micro-batches of at most `max_batch_tokens` padded tokens (not pinned: it changes memory, and the
    scores only by float rounding)."""
    data, folder = Path(data), Path(out) / kind
    samples = read_manifest(data)
    _check_samples(kind, samples, data)
    known = {"kind": kind, "model": model_name or model.name, "data": str(data), "data_sha256": manifest_sha256(data)}
    known |= {"options": options.model_dump(), "batch_size": batch_size}
    shard = current_shard()
    adapter = open_run(folder, model, known, shard)
    install(adapter.model)
    means = _means(adapter, data, samples, options, batch_size) if kind == "causal" else None
    parts = folder / "parts"
    parts.mkdir(exist_ok=True)
    batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    layers, heads = adapter.grid
    with Progress(disable=not progress or not shard.leader) as bar:
        task = bar.add_task(f"{kind} scores", total=len(batches))
        for number, batch in enumerate(batches):
            part = parts / f"{number:06d}.parquet"
            if shard.owns(number) and not part.is_file():
                table = CausalTable(layers, heads) if kind == "causal" else EntryTable(layers, heads)
                pages = [_pages(data, sample) for sample in batch]
                what = f"batch {number} (samples {batch[0].id} to {batch[-1].id})"
                lower = "--max-batch-tokens" if kind == "causal" else "--batch-size (or --max-new-tokens)"
                with out_of_memory_named(what, lower):
                    if kind == "ocr":
                        outcomes = score_ocr_batch(adapter, batch, pages, options, table)
                    elif kind == "retrieval":
                        outcomes = score_retrieval_batch(adapter, batch, options, table)
                    else:
                        outcomes = score_causal_batch(adapter, batch, pages, options, table, means, max_batch_tokens)
                _write_part(part, table, outcomes)
            bar.advance(task)
    shard.merge(lambda: finish(folder, len(batches), (layers, heads), kind))
    return folder


def _pages(data: Path, sample: Sample) -> list:
    return [open_page(data, sample, page) for page in range(len(sample.pages))]


def _means(adapter: ModelAdapter, data: Path, samples: list[Sample], options, batch_size: int):
    """Mean ablation's reference: each head's mean output over the prompts of the first samples (the same on
    every rank and every resume: the samples are fixed)."""
    if options.ablation != "mean":
        return None
    picked = samples[: options.mean_samples]
    batches = (
        encode_samples(adapter, chunk, [_pages(data, sample) for sample in chunk])
        for chunk in (picked[i : i + batch_size] for i in range(0, len(picked), batch_size))
    )
    return prompt_means(adapter, batches)


def _write_part(part: Path, table: EntryTable | CausalTable, outcomes: list[Outcome]) -> None:
    """Outcomes first, then the table renamed into place: a part file means the batch is complete."""
    atomic_write_text(part.with_suffix(".outcomes.json"), json.dumps([asdict(o) for o in outcomes]))
    write_parquet(table.to_arrow(), part)


def finish(folder: Path, batches: int, grid: tuple[int, int], kind: Kind) -> Path:
    """Merge the parts into scores.parquet, scores.json and outcomes.jsonl (empty, but valid, when nothing scored).

    Parts are cast to the one schema: parts that an older version wrote for batches without entries had none."""
    parts = [folder / "parts" / f"{n:06d}.parquet" for n in range(batches)]
    schema = CAUSAL_SCHEMA if kind == "causal" else SCHEMA
    table = pa.concat_tables([pq.read_table(p).cast(schema) for p in parts])
    outcomes = [o for p in parts for o in json.loads(p.with_suffix(".outcomes.json").read_text(encoding="utf-8"))]
    write_parquet(table, folder / "scores.parquet")
    atomic_write_text(folder / "outcomes.jsonl", "".join(json.dumps(o) + "\n" for o in outcomes))
    columns = {name: table[name].to_numpy(zero_copy_only=False) for name in ("sample", "value")}
    head_scores(columns, grid, kind).to_reference(folder / "scores.json")
    return folder


def head_scores(columns: dict[str, np.ndarray], grid: tuple[int, int], kind: Kind) -> HeadScores:
    """Per-head lists: one value per scored token (OCR), or per sample, summed over its tokens (retrieval; causal:
    the drop of the whole answer's metric)."""
    layers, heads = grid
    values = np.asarray(columns["value"], dtype=np.float64).reshape(-1, layers * heads)
    if kind in ("retrieval", "causal") and len(values):
        samples = np.asarray(columns["sample"]).reshape(-1, layers * heads)[:, 0]
        _, first, inverse = np.unique(samples, return_index=True, return_inverse=True)
        sums = np.zeros((len(first), layers * heads))
        np.add.at(sums, inverse, values)
        values = sums[np.argsort(first)]  # samples in the order they were scored
    lists = {Head(i // heads, i % heads): values[:, i] for i in range(layers * heads)}
    return HeadScores(lists, layers, heads)


def outcome_summary(folder: Path) -> dict | None:
    """Scored count, total, and samples not scored per reason (most frequent first), from outcomes.jsonl."""
    path = Path(folder) / "outcomes.jsonl"
    if not path.is_file():
        return None
    outcomes = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    reasons = Counter(o["reason"].split(" (")[0] for o in outcomes if not o["scored"])
    scored = sum(o["scored"] for o in outcomes)
    return {"total": len(outcomes), "scored": scored, "reasons": dict(reasons.most_common())}
