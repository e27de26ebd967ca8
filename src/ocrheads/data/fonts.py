"""Font resolution: named fonts ship with matplotlib (DejaVu), so every machine renders the same glyphs."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageFont

from ocrheads.errors import DataError

PILLOW_DEFAULT = "pillow-default"
_NAMED_FONTS = {
    "dejavu-sans": "DejaVuSans.ttf",
    "dejavu-serif": "DejaVuSerif.ttf",
    "dejavu-mono": "DejaVuSansMono.ttf",
    "dejavu-sans-bold": "DejaVuSans-Bold.ttf",
}
NAMED_FONTS = (*_NAMED_FONTS, PILLOW_DEFAULT)


def _matplotlib_font_dir() -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("matplotlib is not installed; it provides the bundled DejaVu fonts (pip install matplotlib)")
    return Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf"


@dataclass(frozen=True)
class Font:
    """A loaded font and where it came from, so a manifest can record exactly what drew the pages."""

    name: str
    file: str
    size: int
    face: ImageFont.FreeTypeFont


def load_font(name_or_path: str, size: int) -> Font:
    """Load a named font (see NAMED_FONTS) or a .ttf/.otf file at `size` pixels, with the basic layout engine.

    The basic engine is used because it lays out every glyph by its own advance, so glyph positions are the same
    on machines with and without libraqm. `pillow-default` is the font the paper's code silently fell back to.
    """
    if size <= 0:
        raise DataError(f"font size must be a positive number of pixels, got {size}")
    if name_or_path == PILLOW_DEFAULT:
        face = ImageFont.load_default(size)
        if not isinstance(face, ImageFont.FreeTypeFont):
            raise DataError("Pillow was built without FreeType, so its default font cannot be sized; pick a TTF")
        return Font(PILLOW_DEFAULT, "pillow:load_default", size, face)
    if name_or_path in _NAMED_FONTS:
        path = _matplotlib_font_dir() / _NAMED_FONTS[name_or_path]
        recorded = f"matplotlib:{path.name}"
    else:
        path = Path(name_or_path)
        recorded = str(path)
    try:
        face = ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)
    except OSError as err:
        raise DataError(
            f"cannot open font {name_or_path!r} ({err}); "
            f"pass a readable .ttf/.otf file or one of {', '.join(NAMED_FONTS)}"
        ) from None
    return Font(name_or_path, recorded, size, face)
