"""Draw placed text onto pages and record an ink-tight box for every character.

Pages are composed from single-glyph bitmaps, so each character's ink is known exactly rather than estimated
from font metrics (the paper's boxes came from line metrics and missed glyph bottoms). A glyph whose ink would
overlap ink already on its line is nudged right until it does not: then no character box can hold a neighbour's
ink, whatever the font's kerning or overhangs.

Boxes are `(x0, y0, x1, y1)` in page pixels with exclusive ends: the ink lies in x0 <= x < x1, y0 <= y < y1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageOps

from ocrheads.data.fonts import Font
from ocrheads.errors import DataError

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Glyph:
    bitmap: Image.Image | None  # ink-tight "L" crop (ink = 255); None for characters without ink
    dx: int  # left of the ink relative to the pen position
    dy: int  # top of the ink relative to the baseline
    advance: float


class GlyphAtlas:
    """Renders each distinct character once; pages are then assembled by pasting."""

    def __init__(self, font: Font):
        self.font = font
        self.ascent, self.descent = font.face.getmetrics()
        self._glyphs: dict[str, Glyph] = {}

    def __getitem__(self, char: str) -> Glyph:
        glyph = self._glyphs.get(char)
        if glyph is None:
            glyph = self._glyphs[char] = self._render(char)
        return glyph

    def _render(self, char: str) -> Glyph:
        size = self.font.size
        pad = 2 * size
        canvas = Image.new("L", (4 * size + 2 * pad, 4 * size + 2 * pad), 0)
        origin = (pad, pad + 2 * size)
        ImageDraw.Draw(canvas).text(origin, char, font=self.font.face, fill=255, anchor="ls")
        advance = self.font.face.getlength(char)
        bbox = canvas.getbbox()
        if bbox is None:
            return Glyph(None, 0, 0, advance)
        if bbox[0] == 0 or bbox[1] == 0 or bbox[2] == canvas.width or bbox[3] == canvas.height:
            raise DataError(f"glyph {char!r} of font {self.font.name!r} is larger than 4x its size; use another font")
        return Glyph(canvas.crop(bbox), bbox[0] - origin[0], bbox[1] - origin[1], advance)


@dataclass(frozen=True)
class Run:
    """A piece of the sample text placed on one line of one page, starting at pen position x."""

    start: int  # offset of its first character in the sample text
    text: str
    page: int
    line: int
    x: int


@dataclass(frozen=True)
class Rendering:
    pages: list[Image.Image]
    boxes: dict[int, tuple[int, Box]]  # character offset -> (page index, ink box); inkless characters absent
    line_height: int


def line_metrics(atlas: GlyphAtlas, texts: Iterable[str], line_height: int | None = None) -> tuple[int, int]:
    """(baseline offset from the line top, line height): tall enough that no glyph's ink leaves its line.

    A fixed `line_height` is refused when some glyph's ink would not fit in it."""
    top, bottom = atlas.ascent, atlas.descent
    if line_height is not None:
        top, bottom = 0, 0
    for char in set().union(*map(set, texts)):
        glyph = atlas[char]
        if glyph.bitmap is not None:
            top = max(top, -glyph.dy)
            bottom = max(bottom, glyph.dy + glyph.bitmap.height)
    if line_height is None:
        return top, top + bottom
    if top + bottom > line_height:
        raise DataError(
            f"the ink of font {atlas.font.name!r} at {atlas.font.size} px is {top + bottom} px tall, more than "
            f"--line-height {line_height}; use a smaller --font-size or a larger --line-height"
        )
    return top, line_height


def render_runs(
    runs: Sequence[Run],
    atlas: GlyphAtlas,
    *,
    margin: int,
    lines_per_page: int,
    page_width: int | None = None,
    blank: frozenset[int] = frozenset(),
    sample_id: str = "",
    pitch: int | None = None,
    line_height: int | None = None,
) -> Rendering:
    """Lay out and draw `runs` on pages of equal size.

    `blank` holds character offsets that are laid out but not drawn: the page with those characters removed
    (a control image, and the way tests isolate one character's ink). With `pitch`, every character gets a cell
    that many pixels wide and its ink is centred in it (typewriter layout; a glyph wider than its cell is
    refused); `line_height` fixes the line spacing.
    """
    baseline, line_height = line_metrics(atlas, (run.text for run in runs), line_height)
    placed: list[tuple[int, int, int, int, Image.Image]] = []  # offset, page, x0, y0, bitmap
    line_ink_right: dict[tuple[int, int], int] = {}
    for run in runs:
        pen = float(run.x)
        line_key = (run.page, run.line)
        y_base = margin + run.line * line_height + baseline
        for i, char in enumerate(run.text):
            glyph = atlas[char]
            if glyph.bitmap is not None and pitch is not None:
                if glyph.bitmap.width > pitch:
                    raise DataError(
                        f"glyph {char!r} of font {atlas.font.name!r} is {glyph.bitmap.width} px wide, more than "
                        f"--pitch {pitch}; use a smaller --font-size or a larger --pitch"
                    )
                left = run.x + i * pitch + (pitch - glyph.bitmap.width) // 2
                placed.append((run.start + i, run.page, left, y_base + glyph.dy, glyph.bitmap))
                line_ink_right[line_key] = max(line_ink_right.get(line_key, 0), left + glyph.bitmap.width)
            elif glyph.bitmap is not None:
                left = round(pen) + glyph.dx
                right_so_far = line_ink_right.get(line_key)
                if right_so_far is not None and left < right_so_far:
                    pen += right_so_far - left
                    left = right_so_far
                line_ink_right[line_key] = left + glyph.bitmap.width
                placed.append((run.start + i, run.page, left, y_base + glyph.dy, glyph.bitmap))
            pen += glyph.advance
    n_pages = max((run.page for run in runs), default=0) + 1
    width = page_width or max((right for right in line_ink_right.values()), default=0) + margin
    height = 2 * margin + lines_per_page * line_height
    canvases = [Image.new("L", (width, height), 0) for _ in range(n_pages)]
    boxes: dict[int, tuple[int, Box]] = {}
    for offset, page, x0, y0, bitmap in placed:
        box = (x0, y0, x0 + bitmap.width, y0 + bitmap.height)
        if x0 < 0 or y0 < 0 or box[2] > width or box[3] > height:
            raise DataError(
                f"sample {sample_id or '?'}: the ink of character {offset} would fall outside its "
                f"{width}x{height} page at {box}; increase --margin or the page size"
            )
        boxes[offset] = (page, box)
        if offset not in blank:
            canvases[page].paste(bitmap, (x0, y0))
    return Rendering([ImageOps.invert(canvas) for canvas in canvases], boxes, line_height)
