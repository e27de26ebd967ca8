"""Every command that loads a model runs from the command line on a saved tiny checkpoint of each family added
after the first eight (their geometry, capture and edits are checked against references in the other tests)."""

import json

import pytest

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.testing.tiny import FAMILIES as TINY_FAMILIES
from ocrheads.testing.tiny import build_tiny

FAMILIES = {  # a checkpoint of the family and the pixel options it runs with
    "paligemma": [],
    "paligemma2": [],
    "pixtral": [],
    "mistral3": [],
    "gemma3": ["do_pan_and_scan=true", "pan_and_scan_min_crop_size=32"],
    "llava_next": [],
    "llava_onevision": ["vision_aspect_ratio=anyres_max_2"],
    "qwen3_vl_moe": [],
    "glm4v": [],
    "glm4v_moe": [],
    "glm46v": [],
    "qwen3_5_moe": [],  # hybrid (linear and softmax attention layers): see test_layer_kinds for qwen3_5
    "gemma4": [],
    "gemma4_moe": ["max_soft_tokens=140"],
    "aya_vision": [],  # no hand-written adapter: the generic one, its geometry probed
    "lighton_ocr": [],
    "llava_onevision1_5": [],
    "paddleocr_vl": [],
    "ovis2": [],
    "hunyuan_vl": [],
    "minicpmv4_6": [],
    "got_ocr2": [],
    "granite4_vision": [],
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families-cli")
    for modality in ("image", "text"):
        generate("passkey", folder / modality, n=2, lengths=(80,), digits=3, seed=5, modality=modality, progress=False)
    return folder


@pytest.mark.parametrize("family", sorted(set(FAMILIES) & set(TINY_FAMILIES)))  # those the installed transformers has
def test_score_mask_sink_and_verify_run_from_the_command_line(family, data, tmp_path, capsys):
    tiny = build_tiny(family)
    checkpoint, run = tmp_path / "model", tmp_path / "run"
    tiny.model.save_pretrained(checkpoint)
    tiny.processor.save_pretrained(checkpoint)
    load = ["--model", str(checkpoint), *(["--pixels", *FAMILIES[family]] if FAMILIES[family] else [])]
    model = [*load, "--quiet"]
    images, texts = str(data / "image"), str(data / "text")
    assert main(["score", "ocr", "--data", images, "--out", str(run), "--answers", "gold", *model]) == 0
    assert main(["score", "retrieval", "--data", texts, "--out", str(run), "--answers", "gold", *model]) == 0
    assert main(["score", "causal", "--data", images, "--out", str(run), *model]) == 0
    out = capsys.readouterr().out
    assert out.count("scored 2 of 2 samples") == 3, out
    assert main(["select", str(run), "--rule", "mean", "--threshold", "0"]) == 0
    arms = ["--dataset", images, "--random-seeds", "1", "--max-new-tokens", "4", *model]
    assert main(["mask", str(run), "--k", "2", *arms]) == 0
    assert main(["sink", str(run), "--top", "2", "--receivers", "image", *arms]) == 0
    for experiment in ("mask", "sink"):
        predictions = (run / experiment / "predictions.jsonl").read_text().splitlines()
        assert predictions and all("reply" in json.loads(line) for line in predictions)
    capsys.readouterr()
    assert main(["verify", *load]) == 0
    assert "all checks passed" in capsys.readouterr().out
