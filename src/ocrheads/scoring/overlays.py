"""Where one head looks while the model writes a sample's answer, drawn over the sample's pages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ocrheads.analysis import figures
from ocrheads.attention import Capture, attention_session, install
from ocrheads.data.manifest import Sample, manifest_sha256, open_samples
from ocrheads.devices import to_cpu
from ocrheads.errors import BadPage, DataError, OcrHeadsError
from ocrheads.float32 import exact_float32
from ocrheads.geometry import spread_over_image
from ocrheads.heads import Head, check_heads
from ocrheads.models import ModelAdapter, ModelSpec
from ocrheads.run.start import open_run
from ocrheads.scoring.answers import answer_ids, sample_prompt
from ocrheads.scoring.passes import append_tokens


@exact_float32()
def head_attention(
    adapter: ModelAdapter, sample: Sample, pages: list[Image.Image], heads: list[Head], answer: list[int]
) -> dict[Head, list[np.ndarray]]:
    """Per head, per page: attention mass per pixel, averaged over the rows that write the answer tokens `answer`.

    One teacher-forced forward pass captures the full probability rows of the heads' layers only.
    """
    if not heads or not answer:
        raise OcrHeadsError(f"sample {sample.id}: an overlay needs at least one head and a non-empty answer")
    _check_overlay_heads(heads, adapter)
    install(adapter.model)
    batch = adapter.encode([sample_prompt(adapter, sample)], [pages])
    images = adapter.image_tokens(batch, [[page.size for page in pages]])[0]
    prompt_length = batch["input_ids"].shape[1]
    rows = torch.arange(prompt_length - 1, prompt_length - 1 + len(answer))[None]
    capture = Capture(rows, keep_probs=True, layers=frozenset(head.layer for head in heads))
    tokens = torch.tensor([answer])
    with torch.no_grad(), attention_session(adapter.model, capture=capture) as session:
        extended = append_tokens(batch, tokens, torch.ones_like(tokens), adapter.written_token_types)
        adapter.forward(extended)
    maps = {}
    for head in heads:
        mean_row = to_cpu(session.captured(head.layer).probs[0, head.head]).float().mean(0).numpy()
        maps[head] = [spread_over_image(image, mean_row) for image in images]
    return maps


def _check_overlay_heads(heads: list[Head], model: ModelAdapter | ModelSpec) -> None:
    """Heads of the model whose keys hold the image's tokens (all attention layers but where the image enters
    through cross-attention), or an error naming the others."""
    check_heads(heads, model.grid, "overlay heads", model.layer_kinds)
    seeing = model.image_key_layers()
    if blind := [head.name for head in heads if head.layer not in seeing]:
        raise OcrHeadsError(f"overlay heads {', '.join(blind)}: no image token is among their keys; this model's "
                            f"image is seen by layers {seeing} (cross-attention)")  # fmt: skip


@exact_float32()
def write_overlays(
    model: ModelAdapter | ModelSpec,
    data: Path,
    samples: list[Sample],
    heads: list[Head],
    out: Path,
    *,
    model_name: str = "",
    stop_at_bad_page: bool = False,
) -> tuple[list[Path], list[BadPage]]:
    """`out/<sample>_<head>_page<k>.png` (and .svg) for every evidence page of every sample, on its gold answer; and
    the BadPage of each sample not drawn because a page of it cannot be read (the first is raised where asked).

    `out` is pinned to one model, dataset and set of load settings (its run config), so its overlays stay comparable;
    later calls may draw other samples and heads. Given a ModelSpec, all of that is checked before loading."""
    wrong = next((sample for sample in samples if sample.modality != "image"), None)
    if wrong is not None:
        raise DataError(f"sample {wrong.id} is a text sample; attention overlays need image samples")
    _check_overlay_heads(heads, model)
    known = {"model": model_name or model.name, "data": str(data), "data_sha256": manifest_sha256(data)}
    adapter = open_run(Path(out), model, known)
    written = []
    readable, opened, bad = open_samples(data, samples, stop_at_bad_page)
    for sample, pages in zip(readable, opened, strict=True):
        answer = answer_ids(adapter, sample.answer)
        maps = head_attention(adapter, sample, pages, heads, answer)
        for head, per_page in maps.items():
            for page in sample.evidence_pages or range(len(pages)):
                boxes = [c.box for c in sample.answer_chars if c.page == page and c.box is not None]
                share = f"{per_page[page].sum():.0%} of its attention"
                title = f"{head.name} writing {sample.answer!r} ({sample.id}, page {page}): {share}"
                figure = figures.attention_overlay(pages[page], per_page[page], boxes, title)
                written.append(figures.save(figure, out / f"{sample.id}_{head.name}_page{page}"))
    return written, bad
