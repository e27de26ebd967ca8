"""Writing datasets: determinism, page order, boxes on the right page, round trips and clean failures."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image, ImageDraw

from ocrheads import generate, read_manifest
from ocrheads.cli import main
from ocrheads.data.fonts import load_font
from ocrheads.data.manifest import MANIFEST, Sample
from ocrheads.data.passkey import INTRO
from ocrheads.data.samples import RenderStyle
from ocrheads.errors import DataError, OcrHeadsError


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _glyph_alone(char: str, font_name: str, size: int) -> np.ndarray:
    """Pillow's own rendering of one character, cropped to its ink (True = ink)."""
    font = load_font(font_name, size)
    canvas = Image.new("L", (4 * size, 4 * size), 0)
    ImageDraw.Draw(canvas).text((size, 3 * size), char, font=font.face, fill=255, anchor="ls")
    return np.asarray(canvas.crop(canvas.getbbox())) > 0


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        generate("passkey", tmp_path / name, seed=seed, n=4, lengths=(1024, 2048), overlays=2)
        generate("docs", tmp_path / name / "docs", seed=seed, n=4)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_long_samples_list_pages_in_natural_order_and_boxes_sit_on_the_evidence_page(tmp_path):
    samples = generate("passkey", tmp_path / "pk", n=3, lengths=(8192,), seed=11)
    for sample in samples:
        numbers = [int(re.search(r"page_(\d+)\.png$", path).group(1)) for path in sample.pages]
        assert len(numbers) >= 11, "8k characters should need more than ten pages"
        assert numbers == list(range(len(numbers)))
        for char in sample.answer_chars:
            page = np.asarray(Image.open(tmp_path / "pk" / sample.pages[char.page]).convert("L")) < 255
            x0, y0, x1, y1 = char.box
            assert np.array_equal(page[y0:y1, x0:x1], _glyph_alone(char.char, "dejavu-sans", 16)), char
            others = [p for p in range(len(sample.pages)) if p != char.page]
            assert others and char.page in sample.evidence_pages


def test_a_needle_broken_across_pages_has_boxes_on_both(tmp_path):
    needles = tmp_path / "needles.jsonl"
    record = {
        "needle": "The vault code is Amber Falcon Nine.",
        "question": "What is the code?",
        "answer": "Amber Falcon Nine",
    }
    needles.write_text(json.dumps(record) + "\n")
    style = RenderStyle(wrap_width=12, lines_per_page=2)
    found = False
    for seed in range(40):
        [sample] = generate(
            "niah", tmp_path / f"n{seed}", n=1, lengths=(200,), needles=str(needles), style=style, seed=seed
        )
        if len(sample.evidence_pages) > 1:
            found = True
            break
    assert found, "no seed put the needle across a page break"
    pages = {char.page for char in sample.answer_chars if char.box}
    assert pages == set(sample.evidence_pages) and len(pages) == 2
    assert [word.word for word in sample.answer_words] == ["Amber", "Falcon", "Nine"]
    for word in sample.answer_words:
        inside = [c.box for c in sample.answer_chars if word.offset <= c.offset < word.offset + len(word.word)]
        assert word.box == (
            min(b[0] for b in inside),
            min(b[1] for b in inside),
            max(b[2] for b in inside),
            max(b[3] for b in inside),
        )


def test_manifest_round_trips(tmp_path):
    for task, options in (
        ("passkey", {"n": 2, "lengths": (1024,)}),
        ("niah", {"n": 2}),
        ("chars", {"per_char": 1, "alphabet": "q5"}),
        ("docs", {"n": 4}),
    ):
        samples = generate(task, tmp_path / task, **options)
        assert read_manifest(tmp_path / task) == samples
        line = (tmp_path / task / MANIFEST).read_text().splitlines()[0]
        assert Sample.model_validate_json(line).model_dump_json() == line


def test_text_variant_has_the_same_content_and_no_pages(tmp_path):
    image = generate("niah", tmp_path / "img", n=2, lengths=(1024,), seed=9)
    text = generate("niah", tmp_path / "txt", n=2, lengths=(1024,), seed=9, modality="text")
    assert [s.context for s in text] == [s.context for s in image]
    assert [s.answer_span for s in text] == [s.answer_span for s in image]
    assert all(s.modality == "text" and not s.pages for s in text)
    assert not (tmp_path / "txt" / "pages").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"style": RenderStyle(font="/nonexistent/font.ttf")}, "cannot open font"),
        ({"style": RenderStyle(margin=0, wrap_width=1)}, "outside its"),
        ({"text_source": "EMPTY"}, "holds no text"),
        ({"needles": "BAD_NEEDLES"}, "does not occur in the needle"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, kwargs, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bad.jsonl").write_text(
        json.dumps({"needle": "It is red.", "question": "Colour?", "answer": "blue"}) + "\n"
    )
    kwargs = {
        key: {"EMPTY": str(tmp_path / "empty.txt"), "BAD_NEEDLES": str(tmp_path / "bad.jsonl")}.get(value, value)
        if isinstance(value, str)
        else value
        for key, value in kwargs.items()
    }
    before = set(tmp_path.iterdir())
    with pytest.raises(DataError, match=message):
        generate("niah", tmp_path / "out", n=2, lengths=(300,), **kwargs)
    assert set(tmp_path.iterdir()) == before


def test_a_margin_too_small_for_a_glyph_is_reported_for_its_sample(tmp_path):
    with pytest.raises(DataError, match=r"sample chars-00000: the ink of character \d+ would fall outside"):
        generate(
            "chars", tmp_path / "out", per_char=1, alphabet="j", length=50, style=RenderStyle(margin=0, wrap_width=1)
        )


def test_existing_output_is_kept_unless_overwritten_and_survives_a_failed_overwrite(tmp_path):
    out = tmp_path / "data"
    generate("passkey", out, n=1, lengths=(1024,))
    snapshot = _files(out)
    with pytest.raises(OcrHeadsError, match="already exists; pass --overwrite"):
        generate("passkey", out, n=1, lengths=(1024,), seed=1)
    with pytest.raises(DataError):
        generate("passkey", out, n=1, lengths=(1024,), seed=1, overwrite=True, style=RenderStyle(font="nope.ttf"))
    assert _files(out) == snapshot
    generate("passkey", out, n=1, lengths=(1024,), seed=1, overwrite=True)
    assert _files(out) != snapshot
    assert [p.name for p in tmp_path.iterdir()] == ["data"], "no staging folder may be left behind"


def test_unwritable_output_folder_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OcrHeadsError, match="cannot write to"):
        generate("passkey", blocker / "data", n=1, lengths=(1024,))


def test_cli_generates_shows_and_reports_errors(tmp_path, capsys):
    out = tmp_path / "pk"
    assert main(["data", "passkey", "--n", "2", "--lengths", "1024", "--out", str(out), "--quiet"]) == 0
    [first, _] = read_manifest(out)
    assert main(["data", "show", str(out), "--sample", first.id, "--out", str(tmp_path / "ov"), "--scale", "3"]) == 0
    [overlay] = sorted((tmp_path / "ov").iterdir())
    pixels = np.asarray(Image.open(overlay).convert("RGB")).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    x0, y0 = first.answer_chars[0].box[:2]
    ys, xs = np.nonzero(red)
    assert xs.min() == 3 * x0 - 1 and ys.min() == 3 * y0 - 1, "the outline sits just outside the first character box"
    assert main(["data", "show", str(out), "--sample", "nope"]) == 2
    assert "no sample nope" in capsys.readouterr().err
    assert main(["data", "passkey", "--n", "1", "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_leaves_out_the_passkey_intro_on_request_and_records_it(tmp_path):
    out = tmp_path / "bare"
    args = ["data", "passkey", "--n", "2", "--lengths", "200", "--modality", "text", "--quiet"]
    assert main([*args, "--no-intro", "--out", str(out)]) == 0
    assert main([*args, "--out", str(tmp_path / "full")]) == 0
    bare, full = read_manifest(out), read_manifest(tmp_path / "full")
    assert [s.context for s in full] == [f"{INTRO} {s.context}" for s in bare]
    assert yaml.safe_load((out / "dataset.yaml").read_text())["options"]["intro"] is False


def test_several_fonts_are_used_in_turn_and_recorded(tmp_path):
    fonts = ["dejavu-serif", "dejavu-mono"]
    samples = generate("passkey", tmp_path / "pk", n=3, lengths=(100,), fonts=fonts)
    assert [s.render.font for s in samples] == ["dejavu-serif", "dejavu-mono", "dejavu-serif"]
    config = (tmp_path / "pk" / "dataset.yaml").read_text()
    assert "fonts:\n  - dejavu-serif\n  - dejavu-mono" in config
    generate("passkey", tmp_path / "one", n=1, lengths=(100,), style=RenderStyle(font="dejavu-serif"))
    assert (
        _files(tmp_path / "pk")["pages/passkey-00000/page_000.png"]
        == _files(tmp_path / "one")["pages/passkey-00000/page_000.png"]
    )
    with pytest.raises(DataError, match="docs are laid out in one font"):
        generate("docs", tmp_path / "docs", n=1, fonts=fonts)
