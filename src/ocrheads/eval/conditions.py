"""The arms of an intervention experiment: no edit, the top-k OCR heads, the top-k retrieval heads, and k random
heads per seed, drawn from the model's real layer x head grid (from its layers with attention weights: an edit of a
linear-attention layer's head would do nothing, and a random arm of such heads would be no control)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ocrheads.errors import OcrHeadsError
from ocrheads.heads import CROSS, LINEAR, Head
from ocrheads.run import RunDir
from ocrheads.scoring.kinds import NAMES, READING
from ocrheads.select import select, top_k


@dataclass(frozen=True)
class Condition:
    name: str  # baseline, ocr-top10, retrieval-top10, random-top10-seed0
    group: str  # baseline, ocr, retrieval or random
    heads: tuple[Head, ...] = ()
    seed: int | None = None

    def head_map(self) -> dict[int, tuple[int, ...]]:
        """layer -> heads, what the attention edits take."""
        layers: dict[int, list[int]] = {}
        for head in sorted(self.heads):
            layers.setdefault(head.layer, []).append(head.head)
        return {layer: tuple(heads) for layer, heads in layers.items()}


def random_heads(
    grid: tuple[int, int],
    k: int,
    seed: int,
    *,
    exclude: Iterable[Head] = (),
    like: Sequence[Head] | None = None,
    layer_kinds: Sequence[str] = (),
) -> tuple[Head, ...]:
    """k distinct heads drawn uniformly from the grid minus `exclude` (and, given the layers' kinds, minus the heads
    of linear-attention layers), reproducible from `seed`.

    With `like`, the draw is layer-matched: as many heads from each layer as `like` has there.
    """
    layers, per_layer = grid
    excluded = set(exclude)
    editable = [layer for layer in range(layers) if not layer_kinds or layer_kinds[layer] != LINEAR]
    candidates = [Head(layer, h) for layer in editable for h in range(per_layer) if Head(layer, h) not in excluded]
    rng = random.Random(seed)
    if like is None:
        if k > len(candidates):
            raise OcrHeadsError(f"k={k} random heads asked for, but only {len(candidates)} heads are left to draw from")
        return tuple(rng.sample(candidates, k))
    drawn: list[Head] = []
    for layer, count in sorted(Counter(head.layer for head in like).items()):
        pool = [head for head in candidates if head.layer == layer]
        if count > len(pool):
            raise OcrHeadsError(f"layer {layer}: {count} heads to match, but only {len(pool)} left to draw from")
        drawn += rng.sample(pool, count)
    return tuple(drawn)


def masking_conditions(
    run: str | Path,
    grid: tuple[int, int],
    ks: Sequence[int],
    seeds: Sequence[int],
    *,
    exclude_selected: bool = False,
    layer_matched: bool = False,
    layer_kinds: Sequence[str] = (),
) -> list[Condition]:
    """Baseline, then per k: top-k OCR, top-k retrieval (each when the run has those scores), random per seed.

    Heads are ranked by the rule of the run's last selection, as `top_heads` does."""
    scores, rule = RunDir(run).scores_for_model(NAMES, grid), RunDir(run).last_rule(NAMES)
    selected: set[Head] = set()
    if exclude_selected:
        selected = {head for kind_scores in scores.values() for head in select(kind_scores, rule).heads}
    conditions = [Condition("baseline", "baseline")]
    for k in ks:
        tops = {kind: top_k(kind_scores, k, rule) for kind, kind_scores in scores.items()}
        conditions += [Condition(f"{kind}-top{k}", kind, tuple(heads)) for kind, heads in tops.items()]
        exclude: set[Head] = set()
        if exclude_selected:
            exclude = selected | {head for heads in tops.values() for head in heads}
        like = tops.get(READING) if layer_matched else None
        if layer_matched and like is None:
            raise OcrHeadsError(f"{run} has no OCR scores to match layers with; drop --layer-matched")
        for seed in seeds:
            heads = random_heads(grid, k, seed, exclude=exclude, like=like, layer_kinds=layer_kinds)
            conditions.append(Condition(f"random-top{k}-seed{seed}", "random", heads, seed))
    return conditions


def sink_conditions(
    run: str | Path, grid: tuple[int, int], n: int, seeds: Sequence[int], layer_kinds: Sequence[str] = ()
) -> list[Condition]:
    """Baseline, sink redistribution in the top-n OCR heads, the top-n retrieval heads, and n random heads per seed.
    Refused for a model whose image enters through cross-attention: its OCR heads' keys are the image's tokens, and
    sinks and receivers are text positions."""
    if CROSS in layer_kinds:
        raise OcrHeadsError("sink: this model's OCR heads lie in image cross-attention layers, whose keys are the "
                            "image's tokens, not the text positions a sink edit moves mass between")  # fmt: skip
    scores, rule = RunDir(run).scores_for_model(NAMES, grid), RunDir(run).last_rule(NAMES)
    conditions = [Condition("baseline", "baseline")]
    conditions += [Condition(f"{kind}-top{n}", kind, tuple(top_k(s, n, rule))) for kind, s in scores.items()]
    conditions += [Condition(f"random-top{n}-seed{s}", "random", random_heads(grid, n, s, layer_kinds=layer_kinds), s)
                   for s in seeds]  # fmt: skip
    return conditions
