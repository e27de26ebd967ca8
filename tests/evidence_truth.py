"""Evidence tokens worked out without ocrheads' geometry, for reference values: the token cells a box meets, by exact
fractions (boxes as they are), or by counting the resized pixels the box covers (corners truncated, as the paper's
code does). Plain loops and exact arithmetic; only the tile layout comes from an adapter, whose own tests check it
against the processors."""

import math
from fractions import Fraction

import numpy as np

from ocrheads.geometry import ImageTokens, Tile


def _exact(value: float) -> Fraction:
    return Fraction(value).limit_denominator(10_000)  # regions like 448/3 come as 149.33333333333334


def cells_met(box: tuple[float, ...], tile: Tile) -> list[tuple[int, int]]:
    """(row, col) of every cell of `tile` whose open rectangle shares a point with the open box."""
    x0, y0, x1, y1 = map(_exact, tile.region)
    width, height = (x1 - x0) / tile.cols, (y1 - y0) / tile.rows
    left, top, right, bottom = map(_exact, box)
    cols = range(max(0, math.floor((left - x0) / width)), min(tile.cols, math.ceil((right - x0) / width)))
    rows = range(max(0, math.floor((top - y0) / height)), min(tile.rows, math.ceil((bottom - y0) / height)))
    return [(row, col) for row in rows for col in cols]


def cells_sharing(box: tuple[float, ...], tile: Tile, rule: str, threshold: float) -> list[tuple[int, int]]:
    """(row, col) of every cell whose exact overlap with the box is positive and, under "coverage", at least
    `threshold` of the box's area, or under "iou", of the union of box and cell."""
    x0, y0, x1, y1 = map(_exact, tile.region)
    width, height = (x1 - x0) / tile.cols, (y1 - y0) / tile.rows
    left, top, right, bottom = map(_exact, box)
    area = (right - left) * (bottom - top)
    found = []
    for row in range(tile.rows):
        for col in range(tile.cols):
            cell_left, cell_top = x0 + col * width, y0 + row * height
            across = min(right, cell_left + width) - max(left, cell_left)
            down = min(bottom, cell_top + height) - max(top, cell_top)
            if across <= 0 or down <= 0:
                continue
            overlap = across * down
            share = {"any": 1, "coverage": overlap / area, "iou": overlap / (area + width * height - overlap)}[rule]
            if share >= Fraction(threshold):
                found.append((row, col))
    return found


def cells_by_pixels(box: tuple[float, ...], tile: Tile, min_share: float) -> list[tuple[int, int]]:
    """(row, col) of every cell holding at least `min_share` of the box's pixels, with the box scaled to the tile's
    resized pixels and its corners truncated (METHOD.md 2.2)."""
    width, height = tile.pixels
    assert width % tile.cols == 0 and height % tile.rows == 0, "cells must be whole pixels to count pixels"
    x0, y0, x1, y1 = tile.region
    left, right = (int((x - x0) * width / (x1 - x0)) for x in (box[0], box[2]))
    top, bottom = (int((y - y0) * height / (y1 - y0)) for y in (box[1], box[3]))
    area = (right - left) * (bottom - top)
    if area <= 0:
        return []
    drawn = np.zeros((height, width), dtype=bool)
    drawn[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
    cell_rows = np.arange(height) // (height // tile.rows)
    cell_cols = np.arange(width) // (width // tile.cols)
    counts = np.zeros((tile.rows, tile.cols), dtype=int)
    for y, x in zip(*np.nonzero(drawn), strict=True):
        counts[cell_rows[y], cell_cols[x]] += 1
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(counts / area >= min_share), strict=True) if counts[r, c]]


def positions(image: ImageTokens, cells_of) -> list[int]:
    """Token positions of the cells `cells_of(tile)` gives, tile by tile, row-major (the order box_tokens keeps);
    rows `row_stride` tokens apart where the tile has one."""
    return [tile.token_start + row * (tile.row_stride or tile.cols) + col
            for tile in image.tiles for row, col in cells_of(tile)]  # fmt: skip


def evidence_tokens(box: tuple[float, ...], image: ImageTokens, truncate: bool, min_share: float) -> set[int]:
    """Token positions of every tile of `image` that see the box."""
    return set(
        positions(image, lambda tile: cells_by_pixels(box, tile, min_share) if truncate else cells_met(box, tile))
    )
