"""Turn a generator's decision about one sample (its `Content`) into a manifest record and page images."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from PIL import Image

from ocrheads.data.fonts import load_font
from ocrheads.data.layout import prose_runs
from ocrheads.data.manifest import CharBox, RenderSettings, Sample, WordBox
from ocrheads.data.render import Box, GlyphAtlas, Rendering, Run, render_runs
from ocrheads.errors import DataError

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Content:
    """What a generator decides about one sample, before any rendering."""

    id: str
    task: str
    question: str
    answer: str
    context: str
    answer_start: int
    meta: dict[str, float | int | str] = field(default_factory=dict)
    runs: tuple[Run, ...] | None = None  # a fixed layout (documents); None means wrap the context as prose

    def __post_init__(self) -> None:
        end = self.answer_start + len(self.answer)
        if not self.answer or self.context[self.answer_start : end] != self.answer:
            raise DataError(
                f"sample {self.id}: the answer {self.answer!r} does not occur in its context at offset "
                f"{self.answer_start}; make sure the needle or document contains the answer verbatim"
            )


@dataclass(frozen=True)
class RenderStyle:
    font: str = "dejavu-sans"
    font_size: int = 16
    wrap_width: int = 50
    lines_per_page: int = 15
    margin: int = 15
    pitch: int | None = None  # typewriter layout: every character in a cell this many pixels wide
    line_height: int | None = None  # fixed line spacing in pixels (default: just tall enough for the font's ink)

    def __post_init__(self) -> None:
        for name in ("font_size", "wrap_width", "lines_per_page", "pitch", "line_height"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.margin < 0:
            raise DataError(f"--margin must be zero or more pixels, got {self.margin}")

    def atlas(self) -> GlyphAtlas:
        return GlyphAtlas(load_font(self.font, self.font_size))


def page_path(sample_id: str, index: int) -> str:
    """Zero-padded, so a plain listing is also reading order."""
    return f"pages/{sample_id}/page_{index:03d}.png"


def _fields(content: Content) -> dict:
    """The record fields that image and text samples share."""
    return dict(
        id=content.id,
        task=content.task,
        question=content.question,
        answer=content.answer,
        context=content.context,
        answer_span=(content.answer_start, content.answer_start + len(content.answer)),
        meta=content.meta,
    )


def text_sample(content: Content) -> Sample:
    return Sample(modality="text", **_fields(content))


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _word_boxes(content: Content, runs: list[Run], boxes: dict[int, tuple[int, Box]]) -> list[WordBox]:
    """One box per answer word and line it sits on (a word broken across lines gets one box per piece)."""
    words = []
    for match in _WORD.finditer(content.answer):
        start = content.answer_start + match.start()
        end = content.answer_start + match.end()
        for run in runs:
            lo, hi = max(start, run.start), min(end, run.start + len(run.text))
            inked = [boxes[offset] for offset in range(lo, hi) if offset in boxes]
            if inked:
                words.append(
                    WordBox(
                        word=content.context[lo:hi],
                        offset=lo,
                        page=inked[0][0],
                        box=_union([box for _, box in inked]),
                    )
                )
    return words


def render_content(
    content: Content, atlas: GlyphAtlas, style: RenderStyle, blank: frozenset[int] = frozenset()
) -> tuple[list[Run], Rendering, int, int | None]:
    """Lay out and draw a content: its runs, the rendering (pages and every character's ink box), and the
    lines per page and wrap width actually used (a fixed layout keeps its own)."""
    if content.runs is None:
        runs = prose_runs(
            content.context, wrap_width=style.wrap_width, lines_per_page=style.lines_per_page, margin=style.margin
        )
        lines_per_page, wrap_width = style.lines_per_page, style.wrap_width
    else:
        runs = list(content.runs)
        lines_per_page, wrap_width = max(run.line for run in runs) + 1, None
    grid_width = 2 * style.margin + style.wrap_width * style.pitch if style.pitch and wrap_width else None
    rendering = render_runs(
        runs,
        atlas,
        margin=style.margin,
        lines_per_page=lines_per_page,
        page_width=grid_width,
        blank=blank,
        sample_id=content.id,
        pitch=style.pitch,
        line_height=style.line_height,
    )
    return runs, rendering, lines_per_page, wrap_width


def image_sample(
    content: Content, atlas: GlyphAtlas, style: RenderStyle, blank: frozenset[int] = frozenset()
) -> tuple[Sample, list[Image.Image]]:
    """Render the context to pages; record every answer character's box, word boxes and evidence pages."""
    runs, rendering, lines_per_page, wrap_width = render_content(content, atlas, style, blank)
    chars = []
    for offset in range(content.answer_start, content.answer_start + len(content.answer)):
        page, box = rendering.boxes.get(offset, (None, None))
        chars.append(CharBox(char=content.context[offset], offset=offset, page=page, box=box))
    evidence = sorted({char.page for char in chars if char.page is not None})
    if not evidence:
        raise DataError(f"sample {content.id}: the answer {content.answer!r} has no visible ink; pick another answer")
    font = atlas.font
    settings = RenderSettings(
        font=font.name,
        font_file=font.file,
        font_size=font.size,
        wrap_width=wrap_width,
        line_height=rendering.line_height,
        lines_per_page=lines_per_page,
        margin=style.margin,
        pitch=style.pitch,
    )
    sample = Sample(
        modality="image",
        pages=[page_path(content.id, index) for index in range(len(rendering.pages))],
        page_sizes=[page.size for page in rendering.pages],
        evidence_pages=evidence,
        answer_chars=chars,
        answer_words=_word_boxes(content, runs, rendering.boxes),
        render=settings,
        **_fields(content),
    )
    return sample, rendering.pages
