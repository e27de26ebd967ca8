"""Prose layout: wrap text into lines that keep their character offsets, then stack lines into pages."""

from __future__ import annotations

import textwrap

from ocrheads.data.render import Run


def wrap_offsets(text: str, width: int) -> list[tuple[int, int]]:
    """Wrap each paragraph of `text` at `width` characters; return (start, end) offsets of every line.

    Lines are exact substrings of `text` (textwrap only drops the spaces it breaks at), so a character keeps
    its offset from the sample text to the page.
    """
    if width < 1:
        raise ValueError(f"wrap width must be at least 1 character, got {width}")
    lines: list[tuple[int, int]] = []
    paragraph_start = 0
    for paragraph in text.split("\n"):
        cursor = paragraph_start
        for line in textwrap.wrap(paragraph, width=width, expand_tabs=False, replace_whitespace=False):
            start = text.index(line, cursor)
            lines.append((start, start + len(line)))
            cursor = start + len(line)
        paragraph_start += len(paragraph) + 1
    return lines


def prose_runs(text: str, *, wrap_width: int, lines_per_page: int, margin: int) -> list[Run]:
    """One run per wrapped line, `lines_per_page` lines to a page, in reading order."""
    return [
        Run(start, text[start:end], index // lines_per_page, index % lines_per_page, margin)
        for index, (start, end) in enumerate(wrap_offsets(text, wrap_width))
    ]
