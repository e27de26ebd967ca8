"""LLaVA-NeXT and LLaVA-OneVision: a base view of the whole page, then the page on an any-resolution grid of tiles.

The processor squashes the page onto one tile (the base view), and also picks the pinpoint canvas that best fits
it (`select_best_resolution`, pinpoints read as (height, width)), resizes the page onto it with its aspect kept,
pads it centred and cuts it into tiles. The model lays the tiles' feature grids side by side, cuts away the rows
(or columns) of features that are padding (`unpad_image`, counted in features, so an edge row may see a little
padding), and writes a newline token after each remaining row; newlines see no pixels. An image's tokens are the
base view's grid, then the unpadded grid row by row, each row followed by its newline.

LLaVA-OneVision is the same, plus: unpadded grids larger than `anyres_max_N` tiles' worth of features are
interpolated down (bilinear), so a token sees a fractional cell of the same rectangle; and in a prompt with
several images each image is only its base view (padded to a square first) and one newline.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
import transformers as tf
from transformers import BatchEncoding
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
from transformers.models.llava_next import modeling_llava_next
from transformers.models.llava_onevision import modeling_llava_onevision

from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, Region, Tile, whole_image
from ocrheads.models.base import ModelAdapter, image_only

log = logging.getLogger("ocrheads")


@dataclass(frozen=True)
class View:
    """A grid of tokens over a rectangle of the page, and the tokens the view takes in input_ids (its grid, and the
    newlines after its rows: `row_stride` apart)."""

    rows: int
    cols: int
    region: Region
    pixels: tuple[int, int] | None
    row_stride: int | None
    tokens: int


class LlavaNextAdapter(ModelAdapter):
    family = "llava_next"
    model_types = ("llava_next",)
    image_placeholder = "<image>"
    model_class = tf.LlavaNextForConditionalGeneration
    processor_class = tf.LlavaNextProcessor
    pixel_options = ("image_grid_pinpoints",)
    unpad = staticmethod(modeling_llava_next.unpad_image)  # the model's own

    @classmethod
    def set_pixel_options(cls, model, processor, image_grid_pinpoints=None):
        """image_grid_pinpoints: the (height, width) canvases a page may be tiled on, for the processor and the model
        alike (they must agree)."""
        if image_grid_pinpoints is not None:
            pinpoints = [list(pinpoint) for pinpoint in image_grid_pinpoints]
            processor.image_processor.image_grid_pinpoints = pinpoints
            model.config.image_grid_pinpoints = pinpoints

    def check_agreement(self) -> None:
        processor, model = self.processor.image_processor.image_grid_pinpoints, self.model.config.image_grid_pinpoints
        if [list(p) for p in processor] != [list(p) for p in model]:
            raise OcrHeadsError(
                f"{self.family}: the processor's image_grid_pinpoints ({processor}) are not the model's ({model}); "
                "set both with --pixels image_grid_pinpoints=..."
            )

    def _image_tokens(self, batch: BatchEncoding, item: int, sizes: list[tuple[int, int]]) -> list[ImageTokens]:
        positions = torch.nonzero(batch["input_ids"][item] == self.model.config.image_token_id).flatten().tolist()
        images, used = [], 0
        for index, size in enumerate(sizes):
            views = self._views(size, alone=len(sizes) == 1)
            count = sum(view.tokens for view in views)
            mine = positions[used : used + count]
            used += count
            if len(mine) != count or (mine and mine[-1] - mine[0] + 1 != count):
                raise OcrHeadsError(
                    f"batch item {item}, image {index}: {len(mine)} image tokens where a {size[0]}x{size[1]} page "
                    f"makes {count} in one run; do the processor's and the model's settings (pinpoints, tile size, "
                    "feature strategy) agree?"
                )
            tiles, offset = [], 0
            for view in views:
                if view.rows and view.cols:
                    start = mine[0] + offset
                    tiles.append(Tile(start, view.rows, view.cols, view.region, view.pixels, view.row_stride))
                offset += view.tokens
            images.append(ImageTokens(index, size, tuple(tiles)))
        if used != len(positions):
            raise OcrHeadsError(f"batch item {item}: {len(positions)} image tokens, but the images make {used}")
        return images

    def _tile_side(self) -> tuple[int, int]:
        """(pixels, features) of one tile's side: the vision tower's image size and its patch grid. The processor
        must resize and crop tiles to that size, or a view would be a crop the geometry does not follow."""
        vision = self.model.config.vision_config
        image_processor = self.processor.image_processor
        crop = image_processor.crop_size.height if image_processor.crop_size else vision.image_size
        resized = image_processor.size.height or image_processor.size.shortest_edge
        if not crop == resized == vision.image_size:
            raise OcrHeadsError(
                f"{self.family}: the processor resizes tiles to {resized} px and crops {crop}, the vision tower "
                f"reads {vision.image_size} px; ocrheads maps views only where all three agree"
            )
        return vision.image_size, vision.image_size // vision.patch_size

    def _views(self, size: tuple[int, int], alone: bool) -> list[View]:
        pixels, side = self._tile_side()
        base = View(side, side, whole_image(size), (pixels, pixels), None, side * side)
        return [base, self._grid_view(size, pixels, side)]

    def _grid_view(self, size: tuple[int, int], pixels: int, side: int) -> View:
        """The unpadded any-resolution grid, a newline after each row."""
        rows, cols, region, resized = self._unpadded(size, pixels, side)
        return View(rows, cols, region, resized, cols + 1, rows * (cols + 1))

    def _unpadded(self, size: tuple[int, int], pixels: int, side: int) -> tuple[int, int, Region, tuple[int, int]]:
        """Rows and columns of the grid the model keeps after unpadding, the page rectangle they see, and its pixels
        on the padded canvas."""
        width, height = size
        canvas_height, canvas_width = select_best_resolution((height, width), self.model.config.image_grid_pinpoints)
        page = np.broadcast_to(np.zeros((), np.uint8), (1, height, width))  # a page's shape, without its pixels
        new_height, new_width = get_patch_output_size(page, (canvas_height, canvas_width), ChannelDimension.FIRST)
        paste_x, paste_y = (canvas_width - new_width) // 2, (canvas_height - new_height) // 2
        grid_rows, grid_cols = canvas_height // pixels * side, canvas_width // pixels * side
        kept = self.unpad(torch.arange(grid_rows * grid_cols).view(1, grid_rows, grid_cols), (height, width))
        rows, cols = kept.shape[1:]
        if not kept.numel():  # a page so elongated that no column (or row) of features is left: newlines only
            return rows, cols, whole_image(size), None
        first_row, first_col = divmod(int(kept[0, 0, 0]), grid_cols)
        step = pixels / side  # canvas pixels per feature
        x0, y0 = first_col * step - paste_x, first_row * step - paste_y
        scale_x, scale_y = width / new_width, height / new_height
        region = (x0 * scale_x, y0 * scale_y, (x0 + cols * step) * scale_x, (y0 + rows * step) * scale_y)
        return rows, cols, region, (round(cols * step), round(rows * step))


def anyres_max(vision_aspect_ratio: str) -> int:
    """N of "anyres_max_N": the most tiles' worth of features an unpadded grid keeps."""
    number = vision_aspect_ratio.removeprefix("anyres_max_")
    if not number.isdigit():
        raise OcrHeadsError(f"vision_aspect_ratio {vision_aspect_ratio!r}: expected anyres_max_N, N a whole number")
    return int(number)


class LlavaOnevisionAdapter(LlavaNextAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    model_class = tf.LlavaOnevisionForConditionalGeneration
    processor_class = image_only(tf.LlavaOnevisionProcessor)
    pixel_options = ("image_grid_pinpoints", "vision_aspect_ratio")
    unpad = staticmethod(modeling_llava_onevision.unpad_image)

    @classmethod
    def set_pixel_options(cls, model, processor, image_grid_pinpoints=None, vision_aspect_ratio=None):
        """vision_aspect_ratio: anyres_max_N, the most tiles' worth of features an unpadded grid keeps before it is
        interpolated down, for the processor and the model alike."""
        super().set_pixel_options(model, processor, image_grid_pinpoints)
        if vision_aspect_ratio is not None:
            anyres_max(vision_aspect_ratio)
            processor.vision_aspect_ratio = model.config.vision_aspect_ratio = vision_aspect_ratio

    def check_agreement(self) -> None:
        super().check_agreement()
        if self.processor.vision_aspect_ratio != self.model.config.vision_aspect_ratio:
            raise OcrHeadsError(
                f"{self.family}: the processor's vision_aspect_ratio {self.processor.vision_aspect_ratio!r} is not the "
                f"model's {self.model.config.vision_aspect_ratio!r}; set both with --pixels vision_aspect_ratio=..."
            )

    def _views(self, size: tuple[int, int], alone: bool) -> list[View]:
        pixels, side = self._tile_side()
        if alone:
            return [View(side, side, whole_image(size), (pixels, pixels), None, side * side),
                    self._grid_view(size, pixels, side)]  # fmt: skip
        width, height = size  # one of several images: its base view, padded to a square, then one newline
        square = max(width, height)
        left, top = -((square - width) // 2), -((square - height) // 2)
        base = View(side, side, (left, top, left + square, top + square), (pixels, pixels), None, side * side)
        return [base, View(0, 0, whole_image(size), None, None, 1)]

    def _grid_view(self, size: tuple[int, int], pixels: int, side: int) -> View:
        """The unpadded grid, interpolated down where it holds more than anyres_max_N tiles' features: its tokens
        then see fractional cells of the same rectangle."""
        rows, cols, region, resized = self._unpadded(size, pixels, side)
        most = anyres_max(self.model.config.vision_aspect_ratio)
        ratio = math.sqrt(rows * cols / (most * side**2))
        if ratio > 1.1:
            if rows > 2 * int(rows // ratio) or cols > 2 * int(cols // ratio):
                _warn_coarse_interpolation()
            rows, cols, resized = int(rows // ratio), int(cols // ratio), None
        return View(rows, cols, region, resized, cols + 1, rows * (cols + 1))


@cache
def _warn_coarse_interpolation() -> None:
    """Once a process: where a grid shrinks more than twice, a token's cell holds features its bilinear sample does not
    read, so a box may be named for tokens that do not see all of it."""
    log.warning("llava_onevision: a page's feature grid was interpolated down more than twice (a small "
                "vision_aspect_ratio, or a canvas past anyres_max_N); its tokens are mapped to their whole cells, of "
                "which bilinear sampling reads only the features nearest their centres")  # fmt: skip
