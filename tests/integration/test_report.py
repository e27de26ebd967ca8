"""Attention overlays equal eager attention; a scored run becomes one self-contained report with every section."""

import json
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import torch
import yaml

from ocrheads.attention import install
from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.data.manifest import open_page
from ocrheads.devices import to_cpu
from ocrheads.geometry import spread_over_image
from ocrheads.heads import Head
from ocrheads.provenance import made_by
from ocrheads.run import RunDir
from ocrheads.scoring.kinds import NAMES
from ocrheads.scoring.overlays import head_attention
from ocrheads.training.provenance import invocation

from .tiny_inputs import extend_for, tiny_adapter


def test_head_attention_maps_equal_eager_attention_spread_over_the_page(tmp_path):
    adapter = tiny_adapter("internvl")  # crops plus a thumbnail: the hardest geometry
    adapter.set_pixel_options(adapter.model, adapter.processor, max_patches=4)
    [sample] = generate("passkey", tmp_path / "data", n=1, lengths=(300,), digits=4, seed=2)
    pages = [open_page(tmp_path / "data", sample, k) for k in range(len(sample.pages))]
    answer = adapter.processor.tokenizer(sample.answer, add_special_tokens=False).input_ids
    heads = [Head(0, 1), Head(1, 3)]
    maps = head_attention(adapter, sample, pages, heads, answer)

    batch = adapter.encode([adapter.prompt(sample.question, len(pages))], [pages])
    images = adapter.image_tokens(batch, [[p.size for p in pages]])[0]
    assert len(images[0].tiles) > 1
    length = batch["input_ids"].shape[1]
    adapter.model.set_attn_implementation("eager")
    with torch.no_grad():
        ids = batch["input_ids"]
        full = extend_for(batch, torch.cat([ids, torch.tensor([answer], device=ids.device)], 1))
        attentions = adapter.model(**full, output_attentions=True).attentions
    install(adapter.model)
    for head in heads:
        rows = to_cpu(attentions[head.layer][0, head.head, length - 1 : length - 1 + len(answer)])
        for page, image in enumerate(images):
            expected = spread_over_image(image, rows.mean(0).numpy())
            np.testing.assert_allclose(maps[head][page], expected, rtol=1e-4, atol=1e-9)
            assert maps[head][page].sum() > 0


def test_report_holds_every_section_of_a_scored_run(tmp_path, checkpoint, capsys):
    chars, text, run = tmp_path / "chars", tmp_path / "text", tmp_path / "run"
    assert made_by(checkpoint) is None
    checkpoint = shutil.copytree(checkpoint, tmp_path / "trained")  # as train-demo leaves one: with its record
    runs = [invocation("ocrheads train-demo --out D", 0), invocation(None, 16)]
    (checkpoint / "training.yaml").write_text(yaml.safe_dump({"runs": runs}))
    generate("chars", chars, per_char=2, alphabet="7k", length=120, seed=1)
    generate("passkey", text, n=3, lengths=(150,), digits=3, seed=1, modality="text")
    common = ["--model", str(checkpoint), "--out", str(run), "--answers", "gold", "--quiet"]
    assert main(["score", "ocr", "--data", str(chars), *common]) == 0
    assert main(["score", "retrieval", "--data", str(text), *common]) == 0
    assert main(["select", str(run), "--rule", "mean", "--threshold", "0.2"]) == 0
    assert main(["overlay", str(run), "--model", str(checkpoint), "--data", str(chars), "--sample", "chars-00002"]) == 0
    assert main(["report", str(run)]) == 0
    capsys.readouterr()

    analysis = json.loads((run / "analysis.json").read_text())
    assert analysis["rule"]["name"] == "mean"  # the report keeps the rule of the last analysis (select's)
    characters = analysis["case_study"]["characters"]
    assert list(characters) == ["7", "k"]
    columns = pq.read_table(run / "ocr" / "scores.parquet").to_pydict()
    table = {name: np.array(values) for name, values in columns.items()}
    sevens = np.isin(table["sample"], ["chars-00000", "chars-00001"])  # the generator writes chars character-major
    for name, score in characters["7"]["top"]:
        head = Head.parse(name)
        here = sevens & (table["layer"] == head.layer) & (table["head"] == head.head)
        assert score == round(float(table["value"][here].mean()), 4)
    html = (run / "report.html").read_text()
    embedded = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]*)"', html)
    overlays = [f"chars-00002_{head.name}_page0" for head in RunDir(run).top_heads(NAMES, "ocr", 3, (2, 4))]
    assert embedded == [
        "score bins per kind",
        "layer by head score maps",
        "top-k overlap with the full run as samples are added",
        "ocr heads by activation frequency",
        "retrieval heads by activation frequency",
        "top heads per character",
        *sorted(overlays),
    ]
    assert 'src="http' not in html and "<script" not in html  # nothing fetched: readable offline
    assert yaml.safe_load((run / "ocr" / "config.yaml").read_text())["trained_by"] == made_by(checkpoint)
    code = runs[0]["code"]
    assert f"trained by\n  <code>ocrheads train-demo --out D</code>\n  (code {code}), then" in html
    assert f"<code>train_demo() called from Python</code>\n  (resumed at step 16; code {code})." in html
    assert "OCR heads vs retrieval heads" in html and "Jaccard" in html
    assert f"{analysis['similarity']['jaccard']:.3f}" in html
    assert "4 of 4" in html and "3 of 3" in html  # samples scored per kind
    names = [finding["name"] for finding in analysis["findings"]]
    assert names == ["less sparse", "distinct", "statically activated", "masking", "sink"]
    for finding in analysis["findings"]:
        assert finding["name"] in html and finding["verdict"] in ("shown", "not shown", "not measured")
    assert analysis["ocr"]["stability"]["bootstrap"]["unit"] == "sample"  # OCR entries resampled with their sample
    assert analysis["retrieval"]["stability"]["bootstrap"]["unit"] == "sample"  # one entry per sample
    intervals = json.loads((run / "ocr" / "score_intervals.json").read_text())
    top, score, low, high = analysis["ocr"]["top"][0]
    assert intervals[top] == {"score": round(score, 6), "low": low, "high": high} and low <= score <= high
    assert f"[{low}, {high}]" in html
