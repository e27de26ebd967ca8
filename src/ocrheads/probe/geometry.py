"""Probed geometry: the rectangle of the original page each image token sees, measured by composing the processor
trace (where each pixel_values element comes from) with the tower trace (which elements feed each token's row).

A row's rectangle spans the places of the elements that feed it, each place widened by half the spacing between
neighbouring places (what one element stands for after resizing). A row fed by no element sees no pixels (a
newline or break token); a row fed by most of the page's elements (a perceiver or Q-former resampler) has no local
geometry, and such a model gets no OCR scores. Each seeing token becomes a 1 x 1 tile of its own rectangle, so
box_tokens, point_tokens and overlays read it as they read a hand-written adapter's grids.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Tile
from ocrheads.probe.processor_trace import ElementSources, coded_pages, trace_processor
from ocrheads.probe.tower_trace import flat_pixels, trace_tower

if TYPE_CHECKING:
    from ocrheads.models.base import ModelAdapter

GLOBAL_SHARE = 0.5  # a row fed by more than this share of the page's elements sees it all at once
VIEW_SPREAD = 0.02  # cells whose sides differ by less are one view's (resizing rounds each a little differently)
PLACES = 1e-3  # pixels: places closer than this are one place (an element's channels and temporal copies)


@dataclass(frozen=True)
class ProbedGeometry:
    """What one page size's image tokens see, row by row in input order."""

    size: tuple[int, int]
    rects: np.ndarray  # (rows, 4): x0, y0, x1, y1 in original-page pixels; NaN for a row that sees no pixels
    global_rows: int  # rows fed by most of the page (no local geometry)

    @property
    def tokens(self) -> int:
        return len(self.rects)

    @property
    def blind(self) -> int:
        """Rows that see no pixels."""
        return int(np.isnan(self.rects[:, 0]).sum())

    @property
    def local(self) -> bool:
        return self.global_rows * 2 <= self.tokens - self.blind

    def views(self) -> dict[tuple[float, float], int]:
        """Seeing tokens per cell size (width, height, to the pixel): one entry per view of the page (crops and a
        thumbnail differ)."""
        seeing = self.rects[~np.isnan(self.rects[:, 0])]
        views: Counter = Counter()
        for size in np.stack([seeing[:, 2] - seeing[:, 0], seeing[:, 3] - seeing[:, 1]], axis=1):
            alike = next((view for view in views if np.allclose(view, size, rtol=VIEW_SPREAD)), None)
            views[alike or tuple(round(float(side)) for side in size)] += 1
        return dict(views.most_common())

    def image_tokens(self, image: int, positions: list[int]) -> ImageTokens:
        """The page's tokens at `positions` (this page's image tokens in input_ids, in order)."""
        if len(positions) != self.tokens:
            raise OcrHeadsError(f"image {image}: {len(positions)} image tokens in input_ids for a {self.size[0]}x"
                                f"{self.size[1]} page the probe measured {self.tokens} for")  # fmt: skip
        tiles = tuple(
            Tile(position, 1, 1, tuple(float(v) for v in rect))
            for position, rect in zip(positions, self.rects, strict=True)
            if not np.isnan(rect[0])
        )
        return ImageTokens(image, self.size, tiles)


def _spacing(places: np.ndarray) -> float | None:
    distinct = np.unique(np.round(places / PLACES)) * PLACES
    return float(np.median(np.diff(distinct))) if len(distinct) > 1 else None


def compose(fed: list[np.ndarray], sources: ElementSources, size: tuple[int, int]) -> ProbedGeometry:
    """Each row's rectangle from the places of the elements that feed it."""
    sourced = sources.sourced
    everything = int(sourced.sum())
    rects = np.full((len(fed), 4), np.nan)
    spacings: list[tuple[float | None, float | None]] = []
    global_rows = 0
    measured: dict[int, tuple] = {}  # rows fed by one shared array (every element) are measured once
    for row, elements in enumerate(fed):
        seen = elements[sourced[elements]]
        if len(seen) == 0:
            spacings.append((None, None))
            continue
        global_rows += len(seen) > GLOBAL_SHARE * everything
        if id(elements) not in measured:
            xs, ys = sources.x[seen], sources.y[seen]
            measured[id(elements)] = (xs.min(), ys.min(), xs.max(), ys.max()), (_spacing(xs), _spacing(ys))
        rects[row], spacing = measured[id(elements)]
        spacings.append(spacing)
    known = [(sx, sy) for sx, sy in spacings if sx is not None and sy is not None]
    fallback = np.median(np.array(known), axis=0) if known else np.ones(2)
    width, height = size
    for row, (sx, sy) in enumerate(spacings):
        if np.isnan(rects[row, 0]):
            continue
        half_x, half_y = (sx if sx is not None else fallback[0]) / 2, (sy if sy is not None else fallback[1]) / 2
        x0, y0, x1, y1 = rects[row]
        rects[row] = (max(x0 - half_x, 0.0), max(y0 - half_y, 0.0), min(x1 + half_x, width), min(y1 + half_y, height))
    if len(fed) and np.isnan(rects[:, 0]).all():
        raise OcrHeadsError(
            f"no image token of a {width}x{height} page depends on its pixels: the checkpoint's vision weights are "
            "untrained (zero) somewhere between the pixels and the text model"
        )
    return ProbedGeometry(size, rects, global_rows)


def layout(batch) -> tuple:
    """What fixes the tower trace of a processed page: every tensor's shape and the values of its integer tensors
    other than the text's (grids, image sizes, patch counts). Pages of different sizes with one layout (every page,
    for a processor that resizes to one square) share it."""
    found = []
    for key, value in sorted(batch.items()):
        if torch.is_tensor(value):
            values = () if value.is_floating_point() or key in ("input_ids", "attention_mask") else value.tolist()
            found.append((key, tuple(value.shape), str(values)))
    return tuple(found)


class GeometryProbe:
    """Measures what each image token of a page sees, for one loaded model: each page size's processor trace once,
    and each processor layout's tower trace once (the costly part: BENCHMARKS.md, "The geometry probe")."""

    def __init__(self, adapter: ModelAdapter):
        self.adapter = adapter
        self._pages: dict[tuple[int, int], ProbedGeometry] = {}
        self._towers: dict[tuple, list[np.ndarray]] = {}

    @property
    def layouts(self) -> int:
        """How many processor layouts it has traced the tower for."""
        return len(self._towers)

    def __call__(self, size: tuple[int, int]) -> ProbedGeometry:
        if size not in self._pages:
            adapter, prompt = self.adapter, self.adapter.prompt("", 1)
            sources = trace_processor(lambda page: flat_pixels(adapter.processed(prompt, [page])), size)
            page = coded_pages(size, 0)[0]
            key = layout(adapter.processed(prompt, [page]))
            if key not in self._towers:
                self._towers[key] = trace_tower(adapter, adapter.encode([prompt], [[page]]), sources)
            self._pages[size] = compose(self._towers[key], sources, size)
        return self._pages[size]


def probe_geometry(adapter: ModelAdapter, size: tuple[int, int]) -> ProbedGeometry:
    """Measure what each image token of a page of `size` sees, through `adapter`'s processor and model."""
    return GeometryProbe(adapter)(size)
