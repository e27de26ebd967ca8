"""Tower trace: which elements of the pixel tensors feed each image-token row of what the text model receives, measured
with the vision tower's attention mixing nothing (ocrheads.attention.mixing_nothing), so only its local parts link
a row to pixels.

The rows are read where transformers puts them, at the image tokens of the text model's input (the projector's
output, in order, whatever the family's `get_image_features` returns, with any features added at later layers).
Each row's elements are those its gradient reaches; one gradient per row would cost a backward pass per image token.
Where no element feeds two rows (most towers: patch merges, pixel shuffles, pooling), a few gradients name every
element's row: each weights the rows by powers of two whose exponents spell their indices, which floating point
carries exactly (`_coded`). Elsewhere (overlapping receptive fields, interpolation, resamplers) rows are first
placed coarsely and then traced many at once:
1. stripes: the elements whose place (from the processor trace) lies in one of K vertical, then one of K horizontal
   bands are moved, one band a forward pass; a row that changes depends on that band. A row's bands bound every
   element it depends on. K is what makes the whole trace cheapest, given how far one row's elements spread (a
   row's gradient, taken first).
2. colours: rows whose bounds keep a free band all round from each other share a colour; one gradient of a colour's
   rows summed reaches the union of their elements, and each element goes to the one row of the colour whose bounds
   hold its place. Elements no bound holds (a band the first step missed) send that colour back to a gradient per
   row.
A row that depends on more than three quarters of the bands both ways sees the page at once (a resampler's latent);
it is not traced further. A row that depends on no band may still read the page through attention, as learned
queries do; one pass with the model's own attention tells those (the page at once) from rows that see no pixels.
Patch embeddings run as matmuls meanwhile (ocrheads.probe.patch_matmul): their input gradients are far cheaper so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import BatchEncoding

from ocrheads.attention.mixing_nothing import vision_mixing_nothing
from ocrheads.errors import OcrHeadsError
from ocrheads.probe.patch_matmul import PatchesAsMatmul

if TYPE_CHECKING:
    from ocrheads.models.base import ModelAdapter
    from ocrheads.probe.processor_trace import ElementSources


MIN_BANDS, MAX_BANDS = 4, 32  # below 4, a row across half the page would read as one across all of it
MAX_RADIX = 32  # codes 2^0 .. 2^31: gradients of a few thousand stay far from float32's largest
GRADIENT_COST = 0.5  # a gradient of the tower, in its forward passes (the probe's benchmarks measure 0.1 to 0.8)


class _Received(Exception):
    """Raised from the text model's pre-hook: what it is called with is all the probe needs of the forward pass."""

    def __init__(self, args: tuple, kwargs: dict):
        self.args, self.kwargs = args, kwargs


def _text_model(model) -> torch.nn.Module:
    text = model.get_decoder() if hasattr(model, "get_decoder") else None
    if text is None:
        raise OcrHeadsError(f"{model.config.model_type}: no text model found to read its input embeddings at")
    return text


def _tensors(value) -> list[torch.Tensor]:
    if torch.is_tensor(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [found for item in value for found in _tensors(item)] if isinstance(value, (list, tuple)) else []


def image_rows(adapter: ModelAdapter, batch: BatchEncoding) -> torch.Tensor:
    """(image tokens, features) the text model receives for the batch's image tokens, with a graph to the pixels:
    its input embeddings there, joined with every other (image tokens, hidden) float tensor it is called with (the
    features Granite 4 Vision and Qwen3-VL add at later layers, "deepstack")."""

    def stop(_module, args, kwargs):
        raise _Received(args, kwargs)

    hook = _text_model(adapter.model).register_forward_pre_hook(stop, with_kwargs=True)
    try:
        adapter.model(**batch, use_cache=False)
    except _Received as found:
        args, kwargs = found.args, dict(found.kwargs)
    else:
        raise OcrHeadsError("the model ran without calling its text model; cannot read its image rows")
    finally:
        hook.remove()
    embeddings = kwargs.pop("inputs_embeds", args[0] if args else None)
    image = batch["input_ids"][0] == adapter.image_token
    rows = [embeddings[0, image.to(embeddings.device)]]
    added = [tensor for tensor in _tensors(kwargs) if tensor.is_floating_point() and tensor.shape == rows[0].shape]
    return torch.cat([rows[0], *(tensor.to(rows[0].device) for tensor in added)], dim=1)


def _one_rows_spread(rows: torch.Tensor, leaf: torch.Tensor, sources: ElementSources) -> tuple[float, float]:
    """How far across the page (a fraction each way) one row's elements lie, from its gradient: the middle row's, or
    a quarter's or three quarters' where it sees no pixels (the whole page where none does)."""
    for row in (len(rows) // 2, len(rows) // 4, 3 * len(rows) // 4):
        reached = _reached(rows, leaf, [row])
        reached = reached[sources.sourced[reached]]
        if len(reached):
            spread_x, spread_y = (np.ptp(place[reached]) / np.nanmax(place) for place in (sources.x, sources.y))
            return float(spread_x), float(spread_y)
    return 1.0, 1.0


def _band_count(count: int, spread_x: float, spread_y: float) -> int:
    """Bands per axis that make the trace cheapest: each costs two forward passes (one per axis), and finer bands
    place rows more tightly, so more of them share a gradient (a row's box and its free ring, about its spread plus
    two bands each way, keep out the others of its group). A gradient is costed at GRADIENT_COST forward passes, a
    constant rather than a timing, so that the bands, and the rows that span most of them, are the same on every
    machine."""

    def cost(bands: int) -> float:
        return 2 * bands + count * (spread_x + 2 / bands) * (spread_y + 2 / bands) * GRADIENT_COST

    return min(range(MIN_BANDS, MAX_BANDS + 1), key=cost)


def _cells(sources: ElementSources, bands: int) -> np.ndarray:
    """(2, elements): each element's band along x and along y (-1 for padding)."""
    cells = np.full((2, len(sources.x)), -1)
    for axis, place in enumerate((sources.x, sources.y)):
        seen = ~np.isnan(place)
        cells[axis, seen] = np.minimum((place[seen] / (place[seen].max() + 1) * bands).astype(int), bands - 1)
    return cells


def pixel_keys(batch: BatchEncoding) -> list[str]:
    """The batch's pixel tensors: pixel_values, and any other view a processor sends apart (DeepSeek-OCR2's
    pixel_values_local holds its tiles)."""
    return sorted(
        k for k, v in batch.items() if k.startswith("pixel_values") and torch.is_tensor(v) and v.is_floating_point()
    )


def flat_pixels(batch: BatchEncoding) -> torch.Tensor:
    """Every element of the batch's pixel tensors, flattened and joined in `pixel_keys` order: what a probe's element
    indices count."""
    return torch.cat([batch[key].reshape(-1) for key in pixel_keys(batch)])


def _with_pixels(batch: BatchEncoding, flat: torch.Tensor) -> BatchEncoding:
    """The batch with its pixel tensors cut back out of `flat` (views of it, so gradients reach it)."""
    keys = pixel_keys(batch)
    pieces = torch.split(flat, [batch[key].numel() for key in keys])
    return BatchEncoding(
        dict(batch, **{key: piece.view(batch[key].shape) for key, piece in zip(keys, pieces, strict=True)})
    )


def _spans(adapter: ModelAdapter, batch: BatchEncoding, plain: torch.Tensor, band: np.ndarray, bands: int):
    """(rows, 2): the first and last band of one axis each row depends on (-1, -1: none)."""
    pixels = flat_pixels(batch)
    spans = np.full((plain.shape[0], 2), -1)
    for index in range(bands):
        moved = pixels.clone()
        moved[torch.from_numpy(np.flatnonzero(band == index)).to(moved.device)] += 1
        with torch.no_grad():
            changed = (image_rows(adapter, _with_pixels(batch, moved)) != plain).any(dim=1)
        changed = changed.cpu().numpy()
        spans[changed & (spans[:, 0] < 0), 0] = index
        spans[changed, 1] = index
    return spans


def _colours(bounds: np.ndarray, bands: int) -> list[list[int]]:
    """Indices into `bounds` (x0, x1, y0, y1 in bands) grouped so that each group's boxes have a free band all round:
    an element a band pass missed at a box's edge then lies in no box of its group, which _owned notices."""
    occupied: list[np.ndarray] = []
    groups: list[list[int]] = []
    for index, (x0, x1, y0, y1) in enumerate(bounds):
        ring = (slice(max(y0 - 1, 0), y1 + 2), slice(max(x0 - 1, 0), x1 + 2))
        free = next((colour for colour, grid in enumerate(occupied) if not grid[ring].any()), None)
        if free is None:
            occupied.append(np.zeros((bands, bands), dtype=bool))
            groups.append([])
            free = len(groups) - 1
        occupied[free][y0 : y1 + 1, x0 : x1 + 1] = True
        groups[free].append(index)
    return groups


def trace_tower(adapter: ModelAdapter, batch: BatchEncoding, sources: ElementSources) -> list[np.ndarray]:
    """Per image-token row (in input order), the indices (into `flat_pixels`) of the elements with a place that feed
    it (every such element for a row that sees the page at once)."""
    with vision_mixing_nothing(adapter.model), PatchesAsMatmul():
        leaf = flat_pixels(batch).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            rows = image_rows(adapter, _with_pixels(batch, leaf))
            fed = _coded(rows, leaf, sources)
            if fed is None:
                fed = _banded(adapter, batch, rows, leaf, sources)
    everything = np.flatnonzero(sources.sourced)
    unfed = np.array([row for row, elements in enumerate(fed) if len(elements) == 0], dtype=np.int64)
    for row in _read_through_attention(adapter, batch, unfed, everything):
        fed[row] = everything
    return fed


def _coded(rows: torch.Tensor, leaf: torch.Tensor, sources: ElementSources) -> list[np.ndarray] | None:
    """Every row's elements from a few gradients, where no element feeds two rows (patch merges, pixel shuffles,
    pooling). Each gradient weights every row by a power of two, its code, whose exponent is one digit of the row's
    index; scaling by a power of two is exact in floating point, and the backward pass is linear in what it is
    given, so an element fed by one row has, in each gradient, exactly that row's code times what it has in the
    uncoded one. Its ratios spell the row's index. None where some element's ratios are not powers of two (it feeds
    several rows: overlapping receptive fields, interpolation, a resampler) or spell no row."""
    count = len(rows)
    radix = min(MAX_RADIX, int(np.log2(torch.finfo(leaf.dtype).max)) // 4)  # codes up to 2^(radix - 1), no overflow
    digits = max(1, int(np.ceil(np.log(max(count, 2)) / np.log(radix))))
    index = np.arange(count)
    plain = _gradient(rows, leaf, np.ones(count))
    reached = np.flatnonzero(sources.sourced & (plain != 0))
    row = np.zeros(len(reached), dtype=np.int64)
    for digit in range(digits):
        exponent = index // radix**digit % radix
        coded = _gradient(rows, leaf, np.exp2(exponent))
        if ((coded != 0) & sources.sourced).sum() != len(reached):
            return None
        mantissa, power = np.frexp(coded[reached] / plain[reached])
        if not (np.all(mantissa == 0.5) and np.all((power >= 1) & (power <= radix))):
            return None
        row += (power - 1) * radix**digit
    if len(row) and row.max() >= count:
        return None
    order = np.argsort(row, kind="stable")
    return np.split(reached[order], np.searchsorted(row[order], np.arange(1, count)))


def _gradient(rows: torch.Tensor, leaf: torch.Tensor, code: np.ndarray) -> np.ndarray:
    """The gradient, at every element, of the rows' outputs summed, each row in a fixed random direction of its
    features and weighted by its code."""
    chosen = rows.float()
    weights = torch.randn(chosen.shape, generator=torch.Generator().manual_seed(0)).to(chosen.device)
    scaled = weights * torch.from_numpy(code).to(chosen.device, torch.float32)[:, None]
    (grad,) = torch.autograd.grad((chosen * scaled).sum(), leaf, retain_graph=True)
    return grad.reshape(-1).double().cpu().numpy()


def _banded(adapter: ModelAdapter, batch: BatchEncoding, rows, leaf, sources: ElementSources) -> list[np.ndarray]:
    """Every row's elements by bands, then gradients of rows whose bands keep apart (where elements feed several
    rows)."""
    with torch.no_grad():
        plain = image_rows(adapter, batch)
    bands = _band_count(len(plain), *_one_rows_spread(rows, leaf, sources))
    cells = _cells(sources, bands)
    bounds = np.full((len(plain), 4), -1)  # rows no element feeds with attention cut (learned queries)
    if (_spans(adapter, batch, plain, np.where(cells[0] >= 0, 0, -1), 1)[:, 0] >= 0).any():
        bounds = np.concatenate([_spans(adapter, batch, plain, cells[axis], bands) for axis in (0, 1)], axis=1)
    spanned = np.minimum(bounds[:, 1] - bounds[:, 0], bounds[:, 3] - bounds[:, 2]) + 1
    whole = (bounds[:, 0] >= 0) & (spanned * 4 >= bands * 3)
    traced = np.flatnonzero((bounds[:, 0] >= 0) & ~whole)
    everything = np.flatnonzero(sources.sourced)
    fed = [everything if whole[row] else np.zeros(0, dtype=np.int64) for row in range(len(bounds))]
    for group in _colours(bounds[traced], bands):
        members = [int(traced[index]) for index in group]
        for row, elements in zip(members, _owned(rows, leaf, members, bounds, cells), strict=True):
            fed[row] = elements
    return fed


def _read_through_attention(adapter: ModelAdapter, batch: BatchEncoding, unfed: np.ndarray, placed: np.ndarray):
    """Of the rows no element feeds while attention mixes nothing, those the page reaches with attention as the model
    has it: queries whose only way to the pixels is to attend to them (DeepSeek-OCR2's learned queries, which read
    every patch), so they see the page at once. The rest see no pixels at all (a newline token, a view separator)."""
    if len(unfed) == 0:
        return unfed
    moved = flat_pixels(batch).clone()
    moved[torch.from_numpy(placed).to(moved.device)] += 1
    with torch.no_grad():
        plain = image_rows(adapter, batch)[unfed]
        changed = (image_rows(adapter, _with_pixels(batch, moved))[unfed] != plain).any(dim=1)
    return unfed[changed.cpu().numpy()]


def _owned(rows: torch.Tensor, leaf: torch.Tensor, members: list[int], bounds: np.ndarray, cells: np.ndarray):
    """The placed elements each of `members` depends on: from one gradient of their sum, each element to the member
    whose bounds hold it; from a gradient each where a reached element lies outside every member's bounds."""
    reached = _reached(rows, leaf, members)
    reached = reached[cells[0, reached] >= 0]
    x, y = cells[0, reached], cells[1, reached]
    owned = []
    for row in members:
        x0, x1, y0, y1 = bounds[row]
        owned.append(reached[(x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)])
    if sum(len(elements) for elements in owned) == len(reached):
        return owned
    return [(found := _reached(rows, leaf, [row]))[cells[0, found] >= 0] for row in members]


def _reached(rows: torch.Tensor, leaf: torch.Tensor, members: list[int]) -> np.ndarray:
    """The elements the gradient of `members`' rows (summed, each in a random direction of its features) reaches."""
    code = np.zeros(len(rows))
    code[members] = 1
    return np.flatnonzero(_gradient(rows, leaf, code) != 0)
