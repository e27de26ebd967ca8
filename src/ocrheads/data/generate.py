"""Generate a synthetic dataset folder: `manifest.jsonl`, `dataset.yaml`, PNG pages, optional overlays.

The folder appears complete or not at all: everything is written to a staging folder that is renamed into
place at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from rich.progress import track

from ocrheads.atomic import atomic_folder
from ocrheads.data.docs import docs_contents
from ocrheads.data.haystack import open_text_source
from ocrheads.data.manifest import GENERATOR_VERSION, MANIFEST, Sample, sample_line
from ocrheads.data.niah import niah_contents, read_needles
from ocrheads.data.overlay import write_overlays
from ocrheads.data.passkey import chars_contents, passkey_contents
from ocrheads.data.samples import Content, RenderStyle, image_sample, text_sample
from ocrheads.errors import DataError
from ocrheads.provenance import versions

TASKS = ("passkey", "niah", "chars", "docs")
OVERLAYS = "overlays"


def _contents(task: str, style: RenderStyle, seed: int, text_source: str, options: dict[str, Any]) -> list[Content]:
    if task == "docs":
        return list(docs_contents(atlas=style.atlas(), margin=style.margin, seed=seed, **options))
    source = open_text_source(text_source)
    if task == "passkey":
        return list(passkey_contents(source=source, seed=seed, **options))
    if task == "chars":
        return list(chars_contents(source=source, seed=seed, **options))
    if task == "niah":
        needles = options.pop("needles", None)
        return list(niah_contents(source=source, seed=seed, needles=needles and read_needles(needles), **options))
    raise DataError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def generate(
    task: str,
    out: str | Path,
    *,
    seed: int = 0,
    modality: Literal["image", "text"] = "image",
    text_source: str = "faker",
    style: RenderStyle | None = None,
    overwrite: bool = False,
    overlays: int = 0,
    progress: bool = False,
    fonts: Sequence[str] = (),
    **options: Any,
) -> list[Sample]:
    """Write the `task` dataset to `out` and return its samples.

    `options` are the task's own (passkey: n, lengths, digits, intro; niah: n, lengths, needles; chars: per_char,
    alphabet, length; docs: n, kinds). `fonts`, when given, replace the style's font in turn, sample by sample.
    Every sample is built before anything is written, so bad input fails early; `overlays` draws the answer
    boxes of the first that many samples into `out/overlays/`.
    """
    if modality not in ("image", "text"):
        raise DataError(f"modality must be 'image' or 'text', got {modality!r}")
    if task == "docs" and len(fonts) > 1:
        raise DataError("docs are laid out in one font; give a single --font")
    style = replace(style or RenderStyle(), **({"font": fonts[0]} if fonts else {}))
    contents = _contents(task, style, seed, text_source, dict(options))
    styles = [replace(style, font=font) for font in fonts] or [style]
    atlases = [s.atlas() for s in styles] if modality == "image" else []
    config = {
        "task": task,
        "modality": modality,
        "seed": seed,
        "text_source": text_source,
        "options": {key: list(value) if isinstance(value, tuple) else value for key, value in options.items()},
        "render": vars(style) | {"fonts": list(fonts)} if modality == "image" else None,
        "samples": len(contents),
        "generator_version": GENERATOR_VERSION,
        "versions": versions("ocrheads", "pillow", "faker"),
    }
    samples = []
    with atomic_folder(out, overwrite=overwrite) as staging, (staging / MANIFEST).open("w") as manifest:
        steps: Iterable[Content] = track(contents, description=f"{task} ({modality})") if progress else contents
        for index, content in enumerate(steps):
            if not atlases:
                sample = text_sample(content)
            else:
                turn = index % len(styles)
                sample, pages = image_sample(content, atlases[turn], styles[turn])
                (staging / sample.pages[0]).parent.mkdir(parents=True)
                for path, page in zip(sample.pages, pages, strict=True):
                    page.save(staging / path)
            manifest.write(sample_line(sample))
            samples.append(sample)
        (staging / "dataset.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        if overlays and atlases:
            write_overlays(staging, samples[:overlays], staging / OVERLAYS)
    return samples
