"""Every character box holds all of its character's ink and none of its neighbours' (pixel by pixel)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ocrheads.data.fonts import load_font
from ocrheads.data.layout import prose_runs
from ocrheads.data.render import GlyphAtlas, render_runs
from ocrheads.errors import DataError

# Pairs that collide in proportional fonts (overhangs, kerning-free layout), descenders, accents and punctuation.
STRINGS = [
    "KT ff Tj 9T kO Rp iy Y? L4 W% wA",
    "gjpqy Quick jumping fox, 12345 / 67890_",
    "Ébène à l'été: naïve (crème) brûlée!",
    "The pass key is 48213. Remember it.",
]
FONTS = [("dejavu-sans", 16), ("dejavu-serif", 12), ("dejavu-serif", 20), ("dejavu-mono", 16), ("pillow-default", 10)]


def _ink(page: Image.Image) -> np.ndarray:
    return np.asarray(page) < 255


@pytest.mark.parametrize(("font", "size"), FONTS)
@pytest.mark.parametrize("text", STRINGS)
def test_boxes_hold_all_own_ink_and_no_neighbour_ink(font, size, text):
    atlas = GlyphAtlas(load_font(font, size))
    runs = prose_runs(text, wrap_width=14, lines_per_page=2, margin=6)
    full = render_runs(runs, atlas, margin=6, lines_per_page=2)
    own_ink = {}
    for offset, (page, _) in full.boxes.items():
        blanked = render_runs(runs, atlas, margin=6, lines_per_page=2, blank=frozenset({offset}))
        own_ink[offset] = (page, _ink(full.pages[page]) & ~_ink(blanked.pages[page]))
    assert set(own_ink) == {i for i, char in enumerate(text) if not char.isspace()}
    for offset, (page, ink) in own_ink.items():
        x0, y0, x1, y1 = full.boxes[offset][1]
        ys, xs = np.nonzero(ink)
        assert len(xs), f"{text[offset]!r} left no ink"
        # Tight: the box is exactly the bounding box of the character's own ink.
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1), text[offset]
        for neighbour in (offset - 1, offset + 1):
            if neighbour in own_ink and own_ink[neighbour][0] == page:
                assert not own_ink[neighbour][1][y0:y1, x0:x1].any(), f"{text[neighbour]!r} inside {text[offset]!r}"
    # Nothing on the pages is ink that no character owns.
    for page_index, page in enumerate(full.pages):
        owned = np.zeros_like(_ink(page))
        for page_of, ink in own_ink.values():
            if page_of == page_index:
                owned |= ink
        assert np.array_equal(owned, _ink(page))


def test_pages_equal_pillow_text_rendering_when_no_glyphs_collide():
    """The glyph compositor draws exactly what Pillow draws for the same line (no glyph needed a nudge)."""
    font = load_font("dejavu-mono", 16)
    atlas = GlyphAtlas(font)
    line = "The pass key is 48213. Remember it."
    rendering = render_runs(
        prose_runs(line, wrap_width=80, lines_per_page=1, margin=10), atlas, margin=10, lines_per_page=1
    )
    expected = Image.new("L", rendering.pages[0].size, 255)
    baseline = rendering.pages[0].height - 10 - atlas.descent
    ImageDraw.Draw(expected).text((10, baseline), line, font=font.face, fill=0, anchor="ls")
    assert np.array_equal(np.asarray(rendering.pages[0]), np.asarray(expected))


def test_line_height_keeps_every_glyph_inside_its_line():
    atlas = GlyphAtlas(load_font("dejavu-sans", 16))
    runs = prose_runs("Éj\nÅg\nÇy", wrap_width=5, lines_per_page=3, margin=4)
    rendering = render_runs(runs, atlas, margin=4, lines_per_page=3)
    for run in runs:
        top = 4 + run.line * rendering.line_height
        for offset in range(run.start, run.start + len(run.text)):
            _, (_, y0, _, y1) = rendering.boxes[offset]
            assert top <= y0 and y1 <= top + rendering.line_height


@pytest.mark.parametrize("font", ["dejavu-sans", "dejavu-serif", "dejavu-sans-bold", "pillow-default"])
def test_typewriter_layout_puts_each_character_in_its_own_cell(font):
    text = "The pass key is 48213. Remember it. Wow, quirky jigs!"
    atlas = GlyphAtlas(load_font(font, 13))
    runs = prose_runs(text, wrap_width=16, lines_per_page=4, margin=0)
    rendering = render_runs(runs, atlas, margin=0, lines_per_page=4, page_width=16 * 14, pitch=14, line_height=14)
    assert rendering.pages[0].size == (16 * 14, 4 * 14) and rendering.line_height == 14
    for run in runs:
        for column in range(len(run.text)):
            if run.start + column in rendering.boxes:
                _, (x0, y0, x1, y1) = rendering.boxes[run.start + column]
                assert column * 14 <= x0 and x1 <= (column + 1) * 14
                assert run.line * 14 <= y0 and y1 <= (run.line + 1) * 14


def test_typewriter_layout_refuses_glyphs_too_wide_or_too_tall():
    atlas = GlyphAtlas(load_font("dejavu-sans-bold", 16))
    runs = prose_runs("WWW", wrap_width=8, lines_per_page=1, margin=0)
    with pytest.raises(DataError, match=r"glyph 'W' .* more than --pitch 14"):
        render_runs(runs, atlas, margin=0, lines_per_page=1, pitch=14)
    with pytest.raises(DataError, match="more than --line-height 10"):
        render_runs(runs, atlas, margin=0, lines_per_page=1, line_height=10)
