"""Debug overlays: a sample's evidence pages with every answer box drawn, for a person to check by eye."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from ocrheads.data.manifest import Sample, open_page
from ocrheads.data.render import Box
from ocrheads.errors import DataError

CHAR_COLOUR = (220, 30, 30)
WORD_COLOUR = (30, 90, 220)


def _outline(draw: ImageDraw.ImageDraw, box: Box, scale: int, colour: tuple[int, int, int], pad: int) -> None:
    """Draw just outside the box, so the outline never hides the ink it encloses."""
    x0, y0, x1, y1 = (value * scale for value in box)
    draw.rectangle((x0 - pad, y0 - pad, x1 - 1 + pad, y1 - 1 + pad), outline=colour)


def overlay_page(folder: str | Path, sample: Sample, page: int, scale: int = 2) -> Image.Image:
    """Page `page` of `sample`, enlarged `scale` times (nearest neighbour) with char (red) and word (blue) boxes."""
    image = open_page(folder, sample, page)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(image)
    for char in sample.answer_chars:
        if char.page == page and char.box is not None:
            _outline(draw, char.box, scale, CHAR_COLOUR, pad=1)
    for word in sample.answer_words:
        if word.page == page:
            _outline(draw, word.box, scale, WORD_COLOUR, pad=3)
    return image


def write_overlays(folder: str | Path, samples: list[Sample], out: str | Path, scale: int = 2) -> list[Path]:
    """One PNG per evidence page of each sample, named `<sample id>_page_<k>.png`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for sample in samples:
        if sample.modality != "image":
            raise DataError(f"sample {sample.id} is a text sample and has no pages to draw on")
        for page in sample.evidence_pages:
            target = out / f"{sample.id}_page_{page:03d}.png"
            overlay_page(folder, sample, page, scale).save(target)
            written.append(target)
    return written
