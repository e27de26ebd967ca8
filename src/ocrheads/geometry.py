"""Image-token geometry: which token positions in `input_ids` see a given box of an original image.

Every family reduces to tiles: a tile is a row-major grid of tokens that together see one rectangle of the
original image (the whole image for Qwen-VL and Gemma 3; crops plus a thumbnail for InternVL and SmolVLM; the
centre crop for LLaVA). Each token of a tile sees an equal cell of that rectangle, because processors resize
a tile's region linearly onto the token grid. Where tokens that see no pixels end each row (LLaVA-NeXT's
newlines, Pixtral's breaks), a tile's rows are `row_stride` tokens apart; where features were interpolated onto
another grid (LLaVA-OneVision), the cells are fractions of pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ocrheads.errors import OcrHeadsError

Rule = Literal["any", "coverage", "iou"]
Rounding = Literal["exact", "truncate"]
Region = tuple[float, float, float, float]  # (x0, y0, x1, y1) in original-image pixels; may reach past the image


@dataclass(frozen=True)
class Tile:
    token_start: int  # position in input_ids of the tile's first token
    rows: int
    cols: int
    region: Region  # the rectangle of the original image this tile sees
    pixels: tuple[int, int] | None = None  # (width, height) the processor resizes the region to, where known
    row_stride: int | None = None  # tokens from one row's start to the next's (None: cols, rows touch)

    @property
    def token_count(self) -> int:
        return self.rows * self.cols

    @property
    def stride(self) -> int:
        return self.cols if self.row_stride is None else self.row_stride

    def position(self, row: int, col: int) -> int:
        return self.token_start + row * self.stride + col

    def positions(self) -> list[int]:
        return [self.position(row, col) for row in range(self.rows) for col in range(self.cols)]


@dataclass(frozen=True)
class ImageTokens:
    """Where one image's tokens sit and what they see."""

    image: int  # index of the image in the prompt
    size: tuple[int, int]  # original (width, height)
    tiles: tuple[Tile, ...]

    def positions(self) -> list[int]:
        return [position for tile in self.tiles for position in tile.positions()]


def whole_image(size: tuple[int, int]) -> Region:
    return (0.0, 0.0, float(size[0]), float(size[1]))


def crop_regions(size: tuple[int, int], rows: int, cols: int) -> list[Region]:
    """The rows x cols equal crops of a whole image, row-major (what tiling processors cut after resizing)."""
    width, height = size
    return [
        (col * width / cols, row * height / rows, (col + 1) * width / cols, (row + 1) * height / rows)
        for row in range(rows)
        for col in range(cols)
    ]


def square_side(count: int, what: str) -> int:
    """The side of a square token grid of `count` tokens."""
    side = math.isqrt(count)
    if side * side != count:
        raise OcrHeadsError(f"{what}: {count} tokens do not form a square grid; is the processor config right?")
    return side


def _overlaps(box: tuple[float, float, float, float], tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Per-token overlap area with the box (rows, cols) and each token cell's area."""
    x0, y0, x1, y1 = tile.region
    xs = np.linspace(x0, x1, tile.cols + 1)
    ys = np.linspace(y0, y1, tile.rows + 1)
    width = np.clip(np.minimum(xs[1:], box[2]) - np.maximum(xs[:-1], box[0]), 0, None)
    height = np.clip(np.minimum(ys[1:], box[3]) - np.maximum(ys[:-1], box[1]), 0, None)
    cell = np.outer(np.diff(ys), np.diff(xs))
    return np.outer(height, width), cell


def truncated(box: tuple[float, float, float, float], tile: Tile) -> tuple[tuple[float, ...], Tile]:
    """The box and the tile in the tile's resized pixels, box corners truncated to integers as the paper's code
    does (`int()` after scaling). Truncation can pull a right or bottom edge back onto a token boundary."""
    if tile.pixels is None:
        raise OcrHeadsError(
            "box rounding 'truncate' needs each tile's resized pixel size, which this model's adapter does not give; "
            "use box rounding 'exact'"
        )
    x0, y0, x1, y1 = tile.region
    width, height = tile.pixels
    scale_x, scale_y = width / (x1 - x0), height / (y1 - y0)
    scaled = (
        math.trunc((box[0] - x0) * scale_x),
        math.trunc((box[1] - y0) * scale_y),
        math.trunc((box[2] - x0) * scale_x),
        math.trunc((box[3] - y0) * scale_y),
    )
    return scaled, replace(tile, region=(0.0, 0.0, float(width), float(height)))


def box_tokens(
    box: tuple[float, float, float, float],
    image: ImageTokens,
    rule: Rule = "any",
    threshold: float = 0.0,
    rounding: Rounding = "exact",
) -> list[int]:
    """Positions of the tokens of `image` that see `box` (original-image pixels, ends exclusive).

    rule "any": any overlap; "coverage": overlap / box area >= threshold (the paper's code used > 0.1 %, i.e.
    any overlap in practice); "iou": overlap / union with the token cell >= threshold. A token is counted in
    every tile that sees the box (a crop and the thumbnail, say). rounding "truncate" first maps the box to each
    tile's resized pixels with truncated corners (the paper's code; a box truncated to no area sees nothing).
    """
    width, height = image.size
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise OcrHeadsError(f"box {box} is empty or outside its {width}x{height} image {image.image}")
    if rule not in ("any", "coverage", "iou"):
        raise OcrHeadsError(f"unknown evidence rule {rule!r}; use any, coverage or iou")
    if rounding not in ("exact", "truncate"):
        raise OcrHeadsError(f"unknown box rounding {rounding!r}; use exact or truncate")
    positions = []
    for tile in image.tiles:
        seen, grid = truncated(box, tile) if rounding == "truncate" else (box, tile)
        area = (seen[2] - seen[0]) * (seen[3] - seen[1])
        if area <= 0:
            continue
        overlap, cell = _overlaps(seen, grid)
        if rule == "any":
            hit = overlap > 0
        elif rule == "coverage":
            hit = (overlap > 0) & (overlap / area >= threshold)
        else:
            hit = (overlap > 0) & (overlap / (area + cell - overlap) >= threshold)
        positions += [tile.position(int(row), int(col)) for row, col in zip(*np.nonzero(hit), strict=True)]
    return positions


def point_tokens(point: tuple[float, float], image: ImageTokens) -> list[int]:
    """Positions of the tokens whose cells hold `point` (original-image pixels), one per tile that sees it.

    Constant time per point, where box_tokens measures every cell: for labelling thousands of glyphs a step."""
    x, y = point
    positions = []
    for tile in image.tiles:
        x0, y0, x1, y1 = tile.region
        col = math.floor((x - x0) / (x1 - x0) * tile.cols)
        row = math.floor((y - y0) / (y1 - y0) * tile.rows)
        if 0 <= col < tile.cols and 0 <= row < tile.rows:
            positions.append(tile.position(row, col))
    return positions


def spread_over_image(image: ImageTokens, mass: np.ndarray) -> np.ndarray:
    """(height, width) mass per pixel: each token's mass (`mass[position]`) spread evenly over the pixels it sees.

    Tiles that see the same place (a crop and the thumbnail) add up, so the map sums to the mass of the tokens
    that see the image, up to pixel rounding: a pixel belongs to the token cell its centre falls in.
    """
    width, height = image.size
    density = np.zeros((height, width))
    for tile in image.tiles:
        x0, y0, x1, y1 = tile.region
        cols = np.floor((np.arange(width) + 0.5 - x0) / (x1 - x0) * tile.cols).astype(int)
        rows = np.floor((np.arange(height) + 0.5 - y0) / (y1 - y0) * tile.rows).astype(int)
        inside_x, inside_y = (cols >= 0) & (cols < tile.cols), (rows >= 0) & (rows < tile.rows)
        cell_area = (x1 - x0) * (y1 - y0) / tile.token_count
        grid = np.asarray(mass, dtype=np.float64)[tile.positions()].reshape(tile.rows, tile.cols) / cell_area
        density[np.ix_(inside_y, inside_x)] += grid[np.ix_(rows[inside_y], cols[inside_x])]
    return density
