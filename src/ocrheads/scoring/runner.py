"""Score a whole dataset into a run directory (its <kind>/ folder: ocrheads.run.layout), batch by batch, resuming
where an interrupted run stopped; what a kind scores and how is its ScoringKind's (ocrheads.scoring.kinds)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ocrheads.attention import install
from ocrheads.data.manifest import manifest_sha256, open_samples, read_manifest
from ocrheads.devices import out_of_memory_named
from ocrheads.distributed import current_shard
from ocrheads.float32 import exact_float32
from ocrheads.models import ModelAdapter, ModelSpec
from ocrheads.run import KindRun, RunDir, resumable
from ocrheads.run.start import open_run
from ocrheads.scoring.kind import Batch, ScoringKind
from ocrheads.scoring.kinds import scoring_kind
from ocrheads.scoring.options import MAX_BATCH_TOKENS
from ocrheads.scoring.table import Outcome


@exact_float32()
def score(
    kind: str,
    model: ModelAdapter | ModelSpec,
    data: str | Path,
    out: str | Path,
    options,
    *,
    model_name: str = "",
    batch_size: int = 1,
    max_batch_tokens: int = MAX_BATCH_TOKENS,
    stop_at_bad_page: bool = False,
    progress: bool = True,
) -> Path:
    """Score every sample of `data` into `out/kind/`; finished batches of an earlier run are kept, not redone.

    Given a ModelSpec, the data and the run directory are checked before the weights are loaded. Kinds with a
    backward pass (causal) take each batch in micro-batches of at most `max_batch_tokens` padded tokens (not pinned:
    it changes memory, and the scores only by float rounding). A sample with an unreadable page is recorded as not
    scored, with the reason, and the run goes on; `stop_at_bad_page` stops it there instead."""
    scorer, data, folder = scoring_kind(kind), Path(data), RunDir(out).kind(kind)
    samples = scorer.check_samples(read_manifest(data), data)
    known = {"kind": kind, "model": model_name or model.name, "data": str(data), "data_sha256": manifest_sha256(data)}
    known |= {"options": options.model_dump(), "batch_size": batch_size}
    shard = current_shard()
    adapter = open_run(folder.folder, model, known, shard)
    install(adapter.model)
    prepared = scorer.prepare(adapter, data, samples, options, batch_size)
    batches = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    layers = scorer.scored_layers(adapter.layer_kinds)

    def work(number: int):
        chosen = batches[number]
        readable, pages, bad = open_samples(data, chosen, stop_at_bad_page)
        table = scorer.table_for(adapter)
        outcomes = [Outcome(err.sample, False, "", 0.0, reason=err.reason) for err in bad]
        if readable:
            batch = Batch(readable, pages, prepared, max_batch_tokens)
            what = f"batch {number} (samples {chosen[0].id} to {chosen[-1].id})"
            with out_of_memory_named(what, scorer.out_of_memory):
                outcomes += scorer.score_batch(adapter, batch, options, table)
        order = {sample.id: place for place, sample in enumerate(chosen)}
        folder.write_part(number, table.to_arrow(), sorted(outcomes, key=lambda outcome: order[outcome.sample]))

    parts = [(folder.part(number), partial(work, number)) for number in range(len(batches))]
    finish = partial(merge, folder, scorer, len(batches), adapter.grid, layers)
    resumable(parts, finish, shard, description=f"{kind} scores", progress=progress)
    return folder.folder


def merge(folder: KindRun, scorer: ScoringKind, batches: int, grid: tuple[int, int], layers: list[int]) -> None:
    """The parts merged into the kind's table, outcomes and per-head lists (empty, but valid, when nothing scored)."""
    table, outcomes = folder.merge_parts(batches, scorer.schema)
    columns = {name: table[name].to_numpy(zero_copy_only=False) for name in ("sample", "value")}
    folder.write_results(table, outcomes, scorer.head_scores(columns, grid, layers))
