"""Head files for other tools: every format round-trips, reads the way its own tool reads it, carries the run's
provenance, and a file of the wrong format or of another model is refused with a clear error."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.exchange import FORMATS, SUFFIX, read_file, side_file
from ocrheads.heads import HeadScores
from ocrheads.select import HeadSelection

REFERENCE = Path(__file__).parents[1] / "data" / "InternVL2-8B_fg_2.json"


@pytest.fixture(scope="module")
def scored(tmp_path_factory, checkpoint):
    """A scored and selected OCR run of the tiny Qwen2-VL checkpoint."""
    root = tmp_path_factory.mktemp("exchange")
    data, run = root / "data", root / "run"
    generate("passkey", data, n=2, lengths=(120,), digits=3, seed=2, progress=False)
    common = ["--model", str(checkpoint), "--out", str(run), "--answers", "gold", "--quiet"]
    assert main(["score", "ocr", "--data", str(data), *common]) == 0
    assert main(["select", str(run), "--rule", "mean", "--threshold", "0"]) == 0  # every head, ranked
    return run


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_with_its_provenance(scored, checkpoint, fmt, tmp_path, capsys):
    assert main(["heads", "export", str(scored), "--to", fmt]) == 0
    written = scored / "exports" / f"ocr-{fmt}{SUFFIX[fmt]}"
    about = yaml.safe_load(side_file(written).read_text())
    assert about["model"] == str(checkpoint) and about["format"] == fmt and about["grid"] == [2, 4]
    assert about["data_sha256"] and about["data_seed"] == 2 and about["versions"]["transformers"]
    assert about["prompt_template_sha256"].startswith("none") and "pixels" in about and about["image_processor"]
    assert about["image_backend"] == "pil"
    target = tmp_path / "imported"
    assert main(["scores", "import", str(written), "--from", fmt, "--kind", "ocr", "--out", str(target),
                 "--model", str(checkpoint)]) == 0  # fmt: skip
    original = HeadScores.from_reference(scored / "ocr" / "scores.json")
    selection = HeadSelection.from_json(scored / "ocr_heads.json")
    if fmt in ("paper", "retrieval-head", "sparsemm"):
        back = HeadScores.from_reference(target / "ocr" / "scores.json")
        assert back.grid == original.grid
        for head, values in original.lists.items():
            np.testing.assert_allclose(back.lists[head], values, rtol=0, atol=0)
        return
    back = HeadSelection.from_json(target / "ocr_heads.json")
    if fmt == "json":
        assert set(back.heads) == set(selection.heads)
    else:
        assert back.heads == selection.heads
    if fmt == "csv":
        assert back.scores == selection.scores


def test_files_read_the_way_their_own_tools_read_them(scored):
    """Retrieval Head and SparseMM: json.loads(readline()), keys "layer-head"; QRHead: attn_head_set split."""
    original = HeadScores.from_reference(scored / "ocr" / "scores.json")
    for fmt in ("retrieval-head", "sparsemm"):
        assert main(["heads", "export", str(scored), "--to", fmt]) == 0
        with (scored / "exports" / f"ocr-{fmt}.json").open() as handle:
            lists = json.loads(handle.readline())
        means = {tuple(int(x) for x in key.split("-")): float(np.mean(values)) for key, values in lists.items()}
        assert means == {(h.layer, h.head): pytest.approx(float(np.mean(v))) for h, v in original.lists.items()}
    assert main(["heads", "export", str(scored), "--to", "qrhead", "--top", "3"]) == 0
    config = yaml.safe_load((scored / "exports" / "ocr-qrhead.yaml").read_text())
    heads = [tuple(map(int, name.split("-"))) for name in config["attn_head_set"].split(",")]
    assert len(heads) == 3 and config["model_name_or_path"].endswith(config["model_base_class"])


def test_the_published_file_exports_for_each_tool_and_comes_back(tmp_path):
    run = tmp_path / "internvl"
    assert main(["scores", "import", str(REFERENCE), "--kind", "ocr", "--out", str(run)]) == 0
    assert main(["heads", "export", str(run), "--to", "retrieval-head", "--out", str(tmp_path / "rh.json")]) == 0
    back = read_file(tmp_path / "rh.json", "retrieval-head").scores
    original = HeadScores.from_reference(REFERENCE)
    assert back.grid == (32, 32) and all(np.array_equal(back.lists[h], v) for h, v in original.lists.items())


def test_a_file_of_the_wrong_format_or_of_another_model_is_refused(scored, checkpoint, tmp_path, capsys):
    out = ["--kind", "ocr", "--out", str(tmp_path / "x")]
    assert main(["scores", "import", str(REFERENCE), "--from", "retrieval-head", *out]) == 2
    error = capsys.readouterr().err
    assert "is not a retrieval-head file" in error and "'l0_h0' is not \"layer-head\"" in error and "--from" in error
    assert main(["heads", "export", str(scored), "--to", "qrhead"]) == 0
    qrhead = scored / "exports" / "ocr-qrhead.yaml"
    assert main(["scores", "import", str(qrhead), "--from", "json", *out]) == 2
    assert "is not a json file (not JSON" in capsys.readouterr().err
    assert main(["scores", "import", str(qrhead), "--from", "csv", *out]) == 2
    assert "header with layer and head columns" in capsys.readouterr().err
    other = tmp_path / "other-model"
    other.mkdir()
    (other / "config.json").write_text((checkpoint / "config.json").read_text())
    assert main(["scores", "import", str(qrhead), "--from", "qrhead", *out, "--model", str(other)]) == 2
    assert (
        f"holds heads of {checkpoint} (its ocr-qrhead.yaml.provenance.yaml), not of {other}" in capsys.readouterr().err
    )
    assert main(["heads", "export", str(tmp_path / "x"), "--to", "csv"]) == 2  # nothing there
    (tmp_path / "big").mkdir()
    assert main(["scores", "import", str(REFERENCE), *out[:2], "--out", str(tmp_path / "big"), "--model",
                 str(checkpoint)]) == 2  # fmt: skip
    assert "outside the model's 2x4 heads" in capsys.readouterr().err
