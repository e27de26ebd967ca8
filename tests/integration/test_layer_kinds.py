"""Models whose layers are not all self-attention, through every command: a hybrid (Qwen3.5: softmax attention in
layers 0 and 2, linear attention in layer 1) and one whose image enters through cross-attention (Llama 3.2 Vision:
self-attention in layers 0 and 2, image cross-attention in layer 1). Head files, tables, selections, analysis,
report and interventions name only the layers a score applies to, by their true index, and what cannot apply (an
edit of a linear-attention head, an overlay of a head that sees no pixels, a sink edit over image keys) is refused
in one line."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import ATTENTION, CROSS, LINEAR, Head, HeadScores
from ocrheads.testing.tiny import build_tiny

KINDS = ("ocr", "retrieval", "causal")
ATTENTION_LAYERS = {0, 2}


def _scored_from_the_cli(root: Path, family: str, sink: bool) -> Path:
    """A tiny checkpoint of `family` scored as every kind, selected, reported and masked (and sink-edited) from the
    CLI, under `root`; the run directory."""
    for modality in ("image", "text"):
        generate("passkey", root / modality, n=2, lengths=(80,), digits=3, seed=5, modality=modality, progress=False)
    tiny = build_tiny(family)
    tiny.model.save_pretrained(root / "model")
    tiny.processor.save_pretrained(root / "model")
    model, run = ["--model", str(root / "model"), "--quiet"], root / "run"
    scored = [["ocr", "image", "--answers", "gold"], ["retrieval", "text", "--answers", "gold"], ["causal", "image"]]
    for kind, data, *options in scored:
        assert main(["score", kind, "--data", str(root / data), "--out", str(run), *options, *model]) == 0
    assert main(["select", str(run), "--rule", "mean", "--threshold", "0"]) == 0
    assert main(["report", str(run)]) == 0
    arms = ["--dataset", str(root / "image"), "--random-seeds", "3", "--max-new-tokens", "3", *model]
    assert main(["mask", str(run), "--k", "2", "4", *arms]) == 0
    if sink:
        assert main(["sink", str(run), "--top", "2", "--receivers", "image", *arms]) == 0
    return run


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory):
    """A tiny Qwen3.5 scored as every kind, selected, analysed, reported, masked and sink-edited from the CLI."""
    root = tmp_path_factory.mktemp("layer-kinds")
    return root, _scored_from_the_cli(root, "qwen3_5", sink=True)


def _names(layers, heads=4):
    return {Head(layer, head).name for layer in layers for head in range(heads)}


@pytest.mark.parametrize("kind", KINDS)
def test_scores_tables_and_head_files_name_the_true_layers(hybrid_run, kind):
    _, run = hybrid_run
    config = yaml.safe_load((run / kind / "config.yaml").read_text())
    assert config["layer_kinds"] == [ATTENTION, LINEAR, ATTENTION] and config["grid"] == [3, 4]
    assert set(json.loads((run / kind / "scores.json").read_text())) == _names(ATTENTION_LAYERS)
    assert set(pq.read_table(run / kind / "scores.parquet").column("layer").to_pylist()) == ATTENTION_LAYERS
    selected = json.loads((run / f"{kind}_heads.json").read_text())
    assert selected["heads"] and set(selected["heads"]) <= _names(ATTENTION_LAYERS)


@pytest.mark.parametrize("kind", KINDS)
def test_analysis_counts_and_compares_only_the_scored_heads(hybrid_run, kind):
    _, run = hybrid_run
    summary = json.loads((run / "analysis.json").read_text())[kind]
    assert (summary["heads"], summary["scored_layers"]) == (8, sorted(ATTENTION_LAYERS))
    assert sum(summary["bins"].values()) == 8 and {name for name, *_ in summary["top"]} <= _names(ATTENTION_LAYERS)
    stability = summary["stability"]
    assert stability["split_half"]["k"] == stability["settling"]["k"] == 8  # top 10 of 8 scored heads: all 8
    assert stability["settling"]["points"][-1]["mean"] == pytest.approx(1.0)  # every sample: the whole run's top 8


def test_the_report_says_which_layers_each_kind_was_looked_for_in(hybrid_run):
    _, run = hybrid_run
    page = (run / "report.html").read_text()
    assert page.count("0, 2 of 3 (not 1: linear attention)") == len(KINDS)


@pytest.mark.parametrize("experiment", ["mask", "sink"])
def test_masked_edited_and_random_heads_lie_in_attention_layers(hybrid_run, experiment):
    _, run = hybrid_run
    conditions = yaml.safe_load((run / experiment / "config.yaml").read_text())["conditions"]
    random = [heads for name, heads in conditions.items() if name.startswith("random")]
    assert len(random) == (6 if experiment == "mask" else 3)
    assert all(set(heads) <= _names(ATTENTION_LAYERS) for heads in conditions.values())
    drawn = {Head.parse(name).layer for heads in random for name in heads}
    assert drawn == ATTENTION_LAYERS  # both attention layers drawn from; the linear one never


def test_an_overlay_of_a_linear_attention_head_is_refused_in_one_line(hybrid_run, capsys):
    root, run = hybrid_run
    found = main(["overlay", str(run), "--data", str(root / "image"), "--sample", "passkey-00000",
                  "--heads", "l0_h1", "l1_h0", "--model", str(root / "model")])  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert found == 2 and "\n" not in error
    assert "l1_h0" in error and "l0_h1" not in error and "linear-attention" in error


def test_scores_of_a_linear_attention_layer_are_refused():
    """A score file or list that gives a head of a layer the kind does not score is an error naming that head."""
    lists = {Head(layer, head): [0.5] for layer in (0, 1, 2) for head in range(2)}
    with pytest.raises(OcrHeadsError, match="l1_h0"):
        HeadScores(lists, 3, 2, scored_layers=[0, 2])


def test_verify_passes_on_the_hybrid_checkpoint(hybrid_run, capsys):
    root, _ = hybrid_run
    assert main(["verify", "--model", str(root / "model")]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "2 layers x" in out


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory):
    """A tiny Llama 3.2 Vision scored as every kind, selected, reported and masked from the CLI (a sink edit over its
    image keys is refused: see below)."""
    root = tmp_path_factory.mktemp("cross-attention")
    return root, _scored_from_the_cli(root, "mllama", sink=False)


@pytest.mark.parametrize(("kind", "layers"), [("ocr", {1}), ("retrieval", {0, 2}), ("causal", {0, 1, 2})])
def test_ocr_heads_are_looked_for_in_the_cross_attention_layers(cross_run, kind, layers):
    """The image is seen by layer 1 alone: OCR heads live there; retrieval heads in the self-attention layers;
    causal scores ablate every head."""
    _, run = cross_run
    config = yaml.safe_load((run / kind / "config.yaml").read_text())
    assert config["layer_kinds"] == [ATTENTION, CROSS, ATTENTION]
    assert set(json.loads((run / kind / "scores.json").read_text())) == _names(layers)
    assert set(pq.read_table(run / kind / "scores.parquet").column("layer").to_pylist()) == layers
    assert json.loads((run / "analysis.json").read_text())[kind]["scored_layers"] == sorted(layers)


def test_the_report_says_where_ocr_heads_were_looked_for(cross_run):
    _, run = cross_run
    page = (run / "report.html").read_text()
    assert "1 of 3 (not 0, 2: attention)" in page and "0, 2 of 3 (not 1: image cross-attention)" in page


def test_ocr_argmax_keys_are_image_keys(cross_run):
    """An OCR row's top key is an index among the image's keys (two pages' four tile slots of 17 keys)."""
    _, run = cross_run
    keys = pq.read_table(run / "ocr" / "scores.parquet").column("argmax_key").to_numpy()
    assert keys.min() >= 0 and keys.max() < 4 * 17


def test_overlays_draw_cross_attention_heads_and_refuse_blind_ones(cross_run, capsys):
    root, run = cross_run
    common = ["overlay", str(run), "--data", str(root / "image"), "--sample", "passkey-00000",
              "--model", str(root / "model")]  # fmt: skip
    assert main([*common, "--heads", "l1_h2"]) == 0
    assert sorted(path.name for path in (run / "overlays").glob("*.png")) == ["passkey-00000_l1_h2_page0.png"]
    capsys.readouterr()
    assert main([*common, "--heads", "l0_h1"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "l0_h1" in error and "layers [1]" in error


def test_a_sink_edit_over_image_keys_is_refused_in_one_line(cross_run, capsys):
    root, run = cross_run
    arms = ["--dataset", str(root / "image"), "--random-seeds", "1", "--model", str(root / "model"), "--quiet"]
    assert main(["sink", str(run), "--top", "2", *arms]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "cross-attention" in error
    assert not (run / "sink").exists()


def test_verify_passes_on_the_cross_attention_checkpoint(cross_run, capsys):
    root, _ = cross_run
    assert main(["verify", "--model", str(root / "model")]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "3 layers x" in out
