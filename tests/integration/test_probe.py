"""The geometry probe (ocrheads.probe), measured without reading any family's code, against every hand-written
adapter; and the generic adapter that uses it, against the ink a glyph leaves in the image rows the text model
receives.

The probe must give each adapter's tokens for every box: exactly where the page reaches the tower unresized, and for
every box at least TOLERANCE px from each cell edge where it is resized (resampling blurs where an edge lies by a
fraction of a pixel). LLaVA-OneVision interpolates features onto another grid after the tower, so each of its
tokens depends on the patches its bilinear stencil reads: the probe's cells hold the adapter's, not equal them.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from ocrheads.attention.mixing_nothing import vision_mixing_nothing
from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.errors import OcrHeadsError
from ocrheads.geometry import ImageTokens, box_tokens
from ocrheads.probe import tower_trace
from ocrheads.probe.geometry import GeometryProbe, probe_geometry
from ocrheads.probe.processor_trace import coded_pages, trace_processor
from ocrheads.probe.tower_trace import flat_pixels, image_rows
from ocrheads.testing.tiny import FAMILIES, GENERIC_FAMILIES, build_tiny

from .tiny_inputs import glyph_pages, tiny_adapter

HAND_WRITTEN = [family for family in FAMILIES if family not in ("mllama", *GENERIC_FAMILIES)]  # mllama: cross-attention
SIZES = [(300, 200), (90, 250)]
UNRESIZED = {"qwen2_vl": (252, 168), "llava": (56, 56)}  # pages these tiny processors pass on at their own size
TOLERANCE = 0.5
HOLDS = ("llava_onevision",)  # features interpolated after the tower: the probe's cells hold the adapter's


def _boxes(size: tuple[int, int], count: int, seed: int = 0) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    width, height = size
    boxes = []
    while len(boxes) < count:
        x0, y0 = int(rng.integers(0, width - 1)), int(rng.integers(0, height - 1))
        x1, y1 = min(width, x0 + int(rng.integers(1, 40))), min(height, y0 + int(rng.integers(1, 40)))
        boxes.append((x0, y0, x1, y1))
    return boxes


def _edges(image: ImageTokens) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for tile in image.tiles:
        x0, y0, x1, y1 = tile.region
        xs += list(np.linspace(x0, x1, tile.cols + 1))
        ys += list(np.linspace(y0, y1, tile.rows + 1))
    return np.array(xs), np.array(ys)


def _near_an_edge(box, edges: tuple[np.ndarray, np.ndarray]) -> bool:
    xs, ys = edges
    return any(np.abs(xs - box[i]).min() < TOLERANCE for i in (0, 2)) or any(
        np.abs(ys - box[i]).min() < TOLERANCE for i in (1, 3)
    )


def _both(adapter, size: tuple[int, int], probe=None) -> tuple[ImageTokens, ImageTokens]:
    """The adapter's image tokens of a page of `size` and the probe's, at the same positions of input_ids."""
    batch = adapter.encode([adapter.prompt("Read it.", 1)], [[Image.new("RGB", size, "white")]])
    [[ours]] = adapter.image_tokens(batch, [[size]])
    positions = torch.nonzero(batch["input_ids"][0].cpu() == adapter.image_token).flatten().tolist()
    return ours, (probe or GeometryProbe(adapter))(size).image_tokens(0, positions)


@pytest.mark.parametrize("family", HAND_WRITTEN)
def test_the_probe_gives_each_hand_written_adapters_tokens(family):
    """One probe measures both page sizes: where their processed layouts agree (LLaVA resizes every page to one
    square), the second reuses the first's tower trace."""
    adapter = tiny_adapter(family)
    probe = GeometryProbe(adapter)
    checked = 0
    for size in SIZES:
        ours, probed = _both(adapter, size, probe)
        edges = _edges(ours)
        for box in _boxes(size, 300):
            if _near_an_edge(box, edges):
                continue
            expected, found = set(box_tokens(box, ours)), set(box_tokens(box, probed))
            assert found >= expected if family in HOLDS else found == expected, (size, box)
            checked += 1
    assert checked > 200
    if family in ("llava", "paligemma"):
        assert probe.layouts == 1


def test_rows_traced_together_whose_bounds_meet_are_traced_again_one_by_one(monkeypatch):
    """By bands (as where an element feeds several rows), every traced row in one gradient: their elements can no
    longer be told apart by place, which the trace must notice and trace each row alone, giving the same cells."""
    adapter = tiny_adapter("qwen2_vl")
    expected = probe_geometry(adapter, (300, 200)).rects
    monkeypatch.setattr(tower_trace, "_coded", lambda *_: None)
    monkeypatch.setattr(tower_trace, "_colours", lambda bounds, bands: [list(range(len(bounds)))])
    assert np.array_equal(probe_geometry(adapter, (300, 200)).rects, expected)


@pytest.mark.parametrize("family", ["qwen2_vl", "internvl", "gemma3", "aya_vision", "minicpmv4_6", "hunyuan_vl"])
def test_rows_told_apart_by_coded_gradients_are_the_rows_bands_find(family, monkeypatch):
    """Where no element feeds two rows, a few power-of-two-coded gradients name each element's row; the trace by
    bands, which needs no such thing, must find the same elements."""
    adapter = tiny_adapter(family)
    prompt, size = adapter.prompt("", 1), (300, 200)
    sources = trace_processor(lambda page: flat_pixels(adapter.processed(prompt, [page])), size)
    batch = adapter.encode([prompt], [[coded_pages(size, 0)[0]]])
    coded = tower_trace.trace_tower(adapter, batch, sources)
    calls = []
    monkeypatch.setattr(tower_trace, "_coded", lambda *_: calls.append(1))
    banded = tower_trace.trace_tower(adapter, batch, sources)
    assert calls and len(coded) == len(banded)
    assert all(np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(coded, banded, strict=True))


def test_an_element_fed_by_two_rows_sends_the_trace_to_bands(monkeypatch):
    """GOT-OCR2's convolutions give each patch to several tokens: no power of two can name its row."""
    adapter = tiny_adapter("got_ocr2")
    found = []
    original = tower_trace._coded
    monkeypatch.setattr(tower_trace, "_coded", lambda *args: found.append(original(*args)) or found[-1])
    probe_geometry(adapter, (120, 90))
    assert found == [None]


@pytest.mark.parametrize("family", sorted(UNRESIZED))
def test_the_probe_is_exact_where_pages_reach_the_tower_unresized(family):
    adapter = tiny_adapter(family)
    ours, probed = _both(adapter, UNRESIZED[family])
    for box in _boxes(UNRESIZED[family], 400, seed=1):
        assert set(box_tokens(box, probed)) == set(box_tokens(box, ours)), box


def _inked_rows(adapter, batch, blank) -> np.ndarray:
    """Which image rows the text model receives change when the glyph is drawn (the tower mixing nothing)."""
    with torch.no_grad(), vision_mixing_nothing(adapter.model):
        inked, plain = image_rows(adapter, batch), image_rows(adapter, blank)
    return (inked != plain).any(dim=1).cpu().numpy()


@pytest.mark.parametrize("family", GENERIC_FAMILIES)
def test_the_generic_adapters_cells_are_where_a_glyph_leaves_its_ink(family):
    """Families without a hand-written adapter (Aya Vision: crops and a thumbnail, pixel shuffle; LightOnOCR: merged
    Pixtral patches): every token whose cell the glyph mostly covers must change, and every token that changes must
    see the glyph (within the resize's blur)."""
    adapter = tiny_adapter(family)
    seen = 0
    for size, _, box, batch, tokens in glyph_pages(adapter, [(300, 200), (120, 90)], trials=6):
        blank = adapter.encode([adapter.prompt("Read it.", 1)], [[Image.new("RGB", size, "white")]])
        positions = torch.nonzero(batch["input_ids"][0].cpu() == adapter.image_token).flatten().tolist()
        changed = {positions[row] for row in np.flatnonzero(_inked_rows(adapter, batch, blank))}
        wide = (max(box[0] - 3, 0), max(box[1] - 3, 0), min(box[2] + 3, size[0]), min(box[3] + 3, size[1]))
        assert changed <= set(box_tokens(wide, tokens)), (size, box)
        mostly = set(box_tokens(box, tokens, "iou", 0.0)) & {
            tile.token_start for tile in tokens.tiles if _covered(box, tile.region) >= 0.5
        }
        assert mostly <= changed, (size, box)
        seen += len(changed)
    assert seen > 0


def _covered(box, region) -> float:
    width = max(0.0, min(box[2], region[2]) - max(box[0], region[0]))
    height = max(0.0, min(box[3], region[3]) - max(box[1], region[1]))
    return width * height / ((region[2] - region[0]) * (region[3] - region[1]))


@pytest.mark.parametrize("family", ["idefics2", "deepseek_ocr2"])
def test_a_resampler_is_refused_ocr_scores_in_one_line_and_still_scores_retrieval(family, tmp_path, capsys):
    """Idefics2's perceiver latents and DeepSeek-OCR2's learned queries each read the whole page (the queries only
    through attention: the probe finds them with the model's own attention, after the cut one finds nothing)."""
    tiny = build_tiny(family)
    checkpoint, run, data = tmp_path / "model", tmp_path / "run", tmp_path / "data"
    tiny.model.save_pretrained(checkpoint)
    tiny.processor.save_pretrained(checkpoint)
    for modality in ("image", "text"):
        generate("passkey", data / modality, n=2, lengths=(80,), digits=3, seed=5, modality=modality, progress=False)
    model = ["--model", str(checkpoint), "--quiet"]
    capsys.readouterr()
    assert main(["score", "ocr", "--data", str(data / "image"), "--out", str(run), "--answers", "gold", *model]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "a resampler" in error and "retrieval and causal scores" in error
    texts = ["--data", str(data / "text"), "--out", str(run), "--answers", "gold", *model]
    assert main(["score", "retrieval", *texts]) == 0
    images = ["--data", str(data / "image"), "--out", str(run), *model]
    assert main(["score", "causal", *images]) == 0
    assert capsys.readouterr().out.count("scored 2 of 2 samples") == 2
    assert main(["models", "--model", str(checkpoint), "--page", "300x200"]) == 0
    assert "a resampler" in capsys.readouterr().out


def test_a_model_whose_image_rows_ignore_their_pixels_is_refused():
    """Gemma 3 as transformers initialises it: a zero projector makes every image row the same whatever the page."""
    adapter = tiny_adapter("gemma3")
    with torch.no_grad():
        adapter.model.model.multi_modal_projector.mm_input_projection_weight.zero_()
    with pytest.raises(OcrHeadsError, match="no image token of a 300x200 page depends on its pixels"):
        probe_geometry(adapter, (300, 200))


def test_models_says_which_adapter_a_checkpoint_gets_and_what_the_probe_found(tmp_path, capsys):
    for family in ("aya_vision", "qwen2_vl"):
        tiny = build_tiny(family)
        tiny.model.save_pretrained(tmp_path / family)
        tiny.processor.save_pretrained(tmp_path / family)
    assert main(["models", "--model", str(tmp_path / "qwen2_vl")]) == 0
    assert "hand-written adapter qwen2_vl" in capsys.readouterr().out
    assert main(["models", "--model", str(tmp_path / "aya_vision"), "--page", "300x200"]) == 0
    out = capsys.readouterr().out
    assert "no hand-written adapter: geometry probed" in out and "75 x 50: 16" in out and "150 x 100: 4" in out


def test_a_model_type_whose_only_image_processor_needs_torchvision_is_refused_by_name(tmp_path, capsys):
    (tmp_path / "lfm").mkdir()
    (tmp_path / "lfm" / "config.json").write_text('{"model_type": "lfm2_vl"}')
    assert main(["models", "--model", str(tmp_path / "lfm")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "lfm2_vl" in error and "torchvision" in error and "perception_lm" in error
