"""The paper's figures, drawn from plain numbers: donuts, layer x head maps, frequency-sorted scores, per-character
maps, and a head's attention over a page. Each function returns a matplotlib Figure; `save` writes it.

Figures are built with matplotlib's object API, not pyplot: no global state, no GUI backend, nothing to close.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from ocrheads.analysis.stats import ABOVE_0_1
from ocrheads.atomic import atomic_write_bytes
from ocrheads.heads import Head
from ocrheads.scoring.kinds import KINDS

BIN_COLOURS = ("#f4a582", "#e8e8e8", "#c6dbef", "#6baed6", "#2171b5", "#08306b")  # negative first (BIN_LABELS)
SCORE_BOUNDS = (0, 0.01, 0.1, 0.3, 0.5, 1.0)  # the paper's heatmap colour bounds (METHOD.md 4.1, cell 8)


def _title(kind: str) -> str:
    """How figures name a kind's heads (an imported kind unknown here keeps its name)."""
    return KINDS[kind].title if kind in KINDS else kind


def save(figure: Figure, path: str | Path) -> Path:
    """Write `figure` as PNG (for the report) and SVG (for papers) at `path` without its suffix."""
    path = Path(path)
    for suffix in (".png", ".svg"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format=suffix[1:], dpi=120, bbox_inches="tight")
        atomic_write_bytes(path.with_suffix(suffix), buffer.getvalue())
    return path.with_suffix(".png")


def _score_map(ax, grid: np.ndarray):
    """A layer x head map, layer 0 at the bottom, on the paper's colour bounds; layers a score does not apply to
    (linear attention) grey."""
    norm = BoundaryNorm(SCORE_BOUNDS, colormaps["Blues"].N, extend="max")
    colours = colormaps["Blues"].with_extremes(bad="#dddddd")
    return ax.imshow(grid, cmap=colours, norm=norm, aspect="auto", interpolation="nearest", origin="lower")


def donuts(bins: dict[str, dict[str, int]]) -> Figure:
    """One donut per kind: the share of heads in each score bin (the paper's "less sparse" figure)."""
    figure = Figure(figsize=(3.6 * len(bins), 3.4))
    axes = figure.subplots(1, len(bins), squeeze=False)
    for ax, (kind, counts) in zip(axes[0], bins.items(), strict=True):
        total = sum(counts.values())
        ax.pie(list(counts.values()), colors=BIN_COLOURS, startangle=90, counterclock=False,
               wedgeprops={"width": 0.38, "edgecolor": "white"})  # fmt: skip
        above = sum(counts[label] for label in ABOVE_0_1)
        ax.text(0, 0, f"{total} heads\n{above} > 0.1", ha="center", va="center", fontsize=10)
        ax.set_title(_title(kind))
    labels = list(next(iter(bins.values())))
    figure.legend(labels, loc="lower center", ncol=len(labels), frameon=False, title="score")
    figure.subplots_adjust(bottom=0.15)
    return figure


def heatmaps(means: dict[str, np.ndarray]) -> Figure:
    """Layer x head maps of each kind's ranking score, on the paper's colour bounds."""
    layers, heads = next(iter(means.values())).shape
    figure = Figure(figsize=(min(14.0, 2.5 + 0.22 * heads * len(means)), max(2.5, 1.2 + 0.2 * layers)))
    axes = figure.subplots(1, len(means), squeeze=False)
    for ax, (kind, grid) in zip(axes[0], means.items(), strict=True):
        image = _score_map(ax, grid)
        ax.set_title(_title(kind))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    figure.colorbar(image, ax=axes[0].tolist(), ticks=SCORE_BOUNDS, label="score")
    return figure


def frequency_plot(activation: dict, kind: str, top: int = 7) -> Figure:
    """Heads sorted by activation frequency: mean score as bars, frequency as a line on the same scale, top heads
    named (the paper's "statically activated" figure). Heads never active are left out."""
    frequency, mean = np.asarray(activation["frequency"]), np.asarray(activation["mean"])
    positions = np.arange(min(len(frequency), max(top, int(np.count_nonzero(frequency)))))
    figure = Figure(figsize=(8, 3.2))
    ax = figure.subplots()
    ax.bar(positions, mean[positions], width=1.0, color="#6baed6", label="mean score")
    ax.plot(positions, frequency[positions], color="#d94801", linewidth=1.5, label="activation frequency")
    ax.set_xlim(-0.5, len(positions) - 0.5)
    ax.set_ylim(0, (max(float(frequency.max(initial=0)), float(mean.max(initial=0))) or 1.0) * 1.1)
    ax.set_xlabel("heads, by activation frequency")
    ax.set_ylabel("score / frequency")
    named = "\n".join(
        f"{name}  {f:.2f}" for name, f in zip(activation["heads"][:top], frequency[:top], strict=False) if f > 0
    )
    if named:
        ax.text(0.98, 0.95, named, transform=ax.transAxes, ha="right", va="top", family="monospace", fontsize=7)
    pearson, spearman = activation["pearson"], activation["spearman"]
    ax.set_title(f"{_title(kind)}: Pearson {pearson:.2f}, Spearman {spearman:.2f}")
    ax.legend(loc="upper center", fontsize=8, frameon=False)
    return figure


def settling_plot(curves: dict[str, dict]) -> Figure:
    """Top-k overlap with the whole run's top-k as samples are added, per kind, with its interval: how many
    samples are enough."""
    figure = Figure(figsize=(5.2, 3.4))
    ax = figure.subplots()
    for kind, curve in curves.items():
        points = [point for point in curve["points"] if point["samples"] > 0]  # a run that scored nothing has none
        sizes = [point["samples"] for point in points]
        ax.plot(sizes, [point["mean"] for point in points], marker="o", label=_title(kind))
        ax.fill_between(sizes, [point["low"] for point in points], [point["high"] for point in points], alpha=0.2)
    k = next(iter(curves.values()))["k"]
    ax.set(ylim=(0, 1.05), xlabel="samples scored", ylabel=f"overlap with the full top-{k}")
    if any(point["samples"] > 0 for curve in curves.values() for point in curve["points"]):
        ax.set_xscale("log")
    ax.legend(frameon=False)
    return figure


def causal_scatter(causal: np.ndarray, others: dict[str, np.ndarray]) -> Figure:
    """Each head's OCR (or retrieval) score against its causal score: do the heads that look at the answer matter
    for writing it?"""
    figure = Figure(figsize=(4.2 * len(others), 3.6))
    axes = figure.subplots(1, len(others), squeeze=False)[0]
    for ax, (kind, values) in zip(axes, others.items(), strict=True):
        ax.scatter(values.ravel(), causal.ravel(), s=12, alpha=0.7)
        ax.set(xlabel=f"{KINDS[kind].title.removesuffix(' heads')} score", ylabel="causal score (drop when ablated)")
        ax.axhline(0, color="#999", linewidth=0.8)
    return figure


def character_maps(characters: dict[str, dict], grid: tuple[int, int]) -> Figure:
    """One small layer x head map per character, showing only its top heads (the paper's case-study grid)."""
    columns = min(6, len(characters))
    rows = -(-len(characters) // columns)
    figure = Figure(figsize=(1.9 * columns, 2.1 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (char, found) in zip(axes.flat, characters.items(), strict=False):
        image = np.zeros(grid)
        for name, value in found["top"]:
            head = Head.parse(name)
            image[head.layer, head.head] = value
        _score_map(ax, image)
        ax.set_title(f"{char!r} (n={found['entries']})", fontsize=8)
        ax.set_axis_on()
        ax.set_xticks([])
        ax.set_yticks([])
    return figure


def attention_overlay(page: Image.Image, heat: np.ndarray, boxes: list[tuple[float, float, float, float]], title: str):
    """A page with one head's attention (mass per pixel) laid over it and the answer boxes outlined."""
    figure = Figure(figsize=(6, 6 * page.height / page.width))
    ax = figure.subplots()
    ax.imshow(page.convert("L"), cmap="gray", vmin=0, vmax=255)
    peak = float(heat.max()) or 1.0
    colours = colormaps["inferno"](heat / peak)
    colours[..., 3] = 0.8 * np.sqrt(heat / peak)  # little attention stays see-through, so the text shows
    ax.imshow(colours, interpolation="nearest")
    scale = ScalarMappable(Normalize(0, peak), "inferno")
    for x0, y0, x1, y1 in boxes:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="#00c853", linewidth=1))
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    figure.colorbar(scale, ax=ax, fraction=0.04, label="attention per pixel")
    return figure
