"""The demo task: passkeys in one page of haystack, shown as an image or given as text.

One definition serves the training script, the held-out check of the bundled model and `ocrheads demo`, so the
model is measured on exactly the settings it was trained for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PIL import Image

from ocrheads.data.haystack import TextSource
from ocrheads.data.layout import wrap_offsets
from ocrheads.data.passkey import passkey_content
from ocrheads.data.render import Box
from ocrheads.data.samples import Content, RenderStyle, render_content

FONTS = ("dejavu-sans", "dejavu-serif", "dejavu-mono", "dejavu-sans-bold", "pillow-default")


@dataclass(frozen=True)
class DemoTask:
    """Defaults: a 5-digit key at a random depth of 160 haystack characters, which fill most of a 20-line page
    (the longest of 1,500 seeded samples takes 19 lines); each sample is drawn in the next of five fonts.

    Pages are typeset on a 28-pixel grid (22 px type, each character centred in a 28-px cell, 28-px lines, no
    margin), so each Qwen2-VL image token (2x2 patches of 14 px) shows exactly one character, as a text token
    shows one digit. Copying a key from a page is then the same skill as copying it from text, which a
    CPU-trained model learns in a session; several characters per token made reading their order a second skill.
    """

    context_length: int = 160
    digits: int = 5
    fonts: tuple[str, ...] = FONTS
    font_size: int = 22
    wrap_width: int = 20
    lines_per_page: int = 20
    cell: int = 28
    intro: bool = False

    def style(self, index: int) -> RenderStyle:
        font = self.fonts[index % len(self.fonts)]
        return RenderStyle(
            font, self.font_size, self.wrap_width, self.lines_per_page, margin=0, pitch=self.cell, line_height=self.cell
        )

    def content(
        self,
        index: int,
        source: TextSource,
        *,
        seed: int,
        context_length: int | None = None,
        digits: int | None = None,
    ) -> Content:
        """Sample `index` at the task's defaults, or with another haystack length or key length (training)."""
        length = self.context_length if context_length is None else context_length
        return passkey_content(index, source, seed=seed, length=length, digits=digits or self.digits, intro=self.intro)


@dataclass(frozen=True)
class Glyph:
    char: str
    offset: int  # in the context
    page: int
    box: Box


class PageRenderer:
    """Renders contents in the demo task's fonts, keeping one glyph atlas per font."""

    def __init__(self, task: DemoTask):
        self.task = task
        self._atlases = {}

    def render(self, content: Content, index: int, *, fit: bool = False) -> tuple[list[Image.Image], list[Glyph]]:
        """The content's pages and every inked character with its page and box; with `fit`, a short context gets
        a page only as tall as its lines."""
        style = self.task.style(index)
        if fit:
            lines = len(wrap_offsets(content.context, style.wrap_width))
            style = replace(style, lines_per_page=min(style.lines_per_page, lines + lines % 2))  # whole tokens
        if style.font not in self._atlases:
            self._atlases[style.font] = style.atlas()
        _, rendering, _, _ = render_content(content, self._atlases[style.font], style)
        boxes = sorted(rendering.boxes.items())
        glyphs = [Glyph(content.context[offset], offset, page, box) for offset, (page, box) in boxes]
        return rendering.pages, glyphs
