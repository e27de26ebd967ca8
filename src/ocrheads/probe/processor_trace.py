"""Processor trace: where on the original page each element of `pixel_values` comes from, measured by sending
coordinate-coded pages through the checkpoint's own processor, without reading the family's code.

Each element's channel is found from pages that are black, then fully lit in one channel; the two give its
intensity scale, whatever the normalisation. Then two pages carry the x and the y coordinate of every pixel:
a coarse ramp over the page in one channel and two fine saw-tooth ramps half a period apart in the others. Resizing
averages neighbouring pixels, so an element reads the coordinate of the centre of what it averaged; the coarse ramp
says which saw-tooth period that is, and the saw-tooth not near its wrap says where in it (to a fraction of a
pixel). An element that no page changes (padding) comes from nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ocrheads.errors import OcrHeadsError

LEVELS = 255
DIGITS = 4  # decimals of a pixel kept of a decoded place
CHANGED = 1e-6  # an element whose value moves less between black and lit pages is padding


@dataclass(frozen=True)
class ElementSources:
    """Per element of the pixel tensors (flattened and joined, tower_trace.flat_pixels): the original-page
    coordinates of the centre of what it shows (continuous pixel units: pixel i spans [i, i + 1)), NaN for padding."""

    x: np.ndarray
    y: np.ndarray
    shape: tuple[int, ...]  # the traced pixels' shape

    @property
    def sourced(self) -> np.ndarray:
        return ~np.isnan(self.x)


FINE = (16, 15)  # the finest saw-tooth: period 16 px at 15 levels a pixel (to 1/30 px where a resize reaches little)


def _medium(length: int) -> tuple[int, int]:
    """Period and levels a pixel of the saw-tooth the coarse ramp can place: the ramp's rounding (length / 510 px)
    and a resize's reach must stay inside a quarter period."""
    period = 64
    while period < length / 16:
        period *= 2
    return period, max(1, LEVELS // period)


def coded_pages(size: tuple[int, int], axis: int) -> list[Image.Image]:
    """Two RGB pages coding each pixel's index along `axis` (0: x, 1: y): a coarse ramp and a medium saw-tooth pair
    (two phases half a period apart), then the fine saw-tooth pair. Whole levels a pixel keep a page that is not
    resized exactly decodable."""
    length = size[axis]
    index = np.arange(length)
    coarse = np.rint(index / max(length - 1, 1) * LEVELS)
    channels = [coarse, *_saw_teeth(index, *_medium(length)), *_saw_teeth(index, *FINE), coarse]
    pages = []
    for first in (0, 3):
        ramp = np.stack(channels[first : first + 3], axis=-1).astype(np.uint8)  # (length, 3)
        grid = ramp[None, :, :] if axis == 0 else ramp[:, None, :]
        pages.append(Image.fromarray(np.ascontiguousarray(np.broadcast_to(grid, (size[1], size[0], 3)))))
    return pages


def _saw_teeth(index: np.ndarray, period: int, levels: int) -> list[np.ndarray]:
    return [np.mod(index, period) * levels, np.mod(index + period // 2, period) * levels]


def _refine(estimate: np.ndarray, tooth: np.ndarray, shifted: np.ndarray, period: int, levels: int) -> np.ndarray:
    """The place within the saw-tooth period the estimate falls in, read from the phase far from its wrap."""
    near_wrap = np.abs(np.mod(estimate, period) - period / 2) > period / 4
    base = np.where(near_wrap, shifted * LEVELS / levels - period // 2, tooth * LEVELS / levels)
    return base + np.rint((estimate - base) / period) * period


def _decode(channels: list[np.ndarray], length: int) -> np.ndarray:
    """Pixel index from the coded channels' intensities in [0, 1]: coarse, then medium; then fine where it agrees
    with the medium reading (a resize that reaches across the fine wrap does not)."""
    coarse, medium, medium_shifted, fine, fine_shifted, _ = channels
    period, levels = _medium(length)
    place = _refine(coarse * max(length - 1, 1), medium, medium_shifted, period, levels)
    finer = _refine(place, fine, fine_shifted, *FINE)
    found = np.where(np.abs(finer - place) <= 0.5 / levels + 0.25, finer, place)
    return np.round(found, DIGITS)  # float noise of the normalisation off: an unresized page decodes to whole pixels


def trace_processor(process, size: tuple[int, int]) -> ElementSources:
    """Sources of every element of the pixels that `process(page)` returns for a page of `size`."""

    def pixels(page: Image.Image) -> np.ndarray:
        return np.asarray(process(page), dtype=np.float64).reshape(-1)

    width, height = size
    plain = np.asarray(process(Image.new("RGB", size, (0, 0, 0))), dtype=np.float64)
    shape, black = plain.shape, plain.reshape(-1)
    lit = [pixels(Image.new("RGB", size, tuple(LEVELS * (c == k) for c in range(3)))) for k in range(3)]
    gains = np.stack([page - black for page in lit])  # (3, elements)
    channel = np.argmax(np.abs(gains), axis=0)
    gain = np.take_along_axis(gains, channel[None], axis=0)[0]
    sourced = np.abs(gain) > CHANGED
    if not sourced.any():
        raise OcrHeadsError(f"no pixel value changes with the page's colours for a {width}x{height} page")
    coordinates = []
    for axis, length in ((0, width), (1, height)):
        readings = []
        for page in coded_pages(size, axis):
            coded = pixels(page)
            intensity = np.where(sourced, (coded - black) / np.where(sourced, gain, 1.0), np.nan)
            readings += [_place_channel(intensity, channel, sourced, k) for k in range(3)]
        coordinates.append(_spread(_decode(readings, length), channel, sourced))
    x, y = coordinates
    return ElementSources(x + 0.5, y + 0.5, shape)


def _place_channel(intensity: np.ndarray, channel: np.ndarray, sourced: np.ndarray, k: int) -> np.ndarray:
    """Channel k's intensity at each place, in place order. Each element shows one channel of one place; the k-th
    element of every channel shows the same place (processors lay channels out alike)."""
    per_channel = [np.flatnonzero(sourced & (channel == c)) for c in range(3)]
    if len({len(found) for found in per_channel}) != 1:
        raise OcrHeadsError("the processor's pixel values do not hold the three colour channels alike")
    return intensity[per_channel[k]]


def _spread(places: np.ndarray, channel: np.ndarray, sourced: np.ndarray) -> np.ndarray:
    """Per element, the place it shows (NaN for padding)."""
    out = np.full(len(channel), np.nan)
    for k in range(3):
        out[np.flatnonzero(sourced & (channel == k))] = places
    return out
