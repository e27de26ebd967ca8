"""`ocrheads mask` on a tiny random model: the masked arms change exactly their heads (checked against the same
heads zeroed by hand at the input of o_proj), random arms come from their seeds, and a resumed run is identical."""

import json

import pytest
import torch
import yaml

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.data.manifest import open_page, read_manifest
from ocrheads.eval.conditions import random_heads
from ocrheads.heads import Head
from ocrheads.models import load_adapter

REFERENCE = "tests/data/InternVL2-8B_fg_2.json"


@pytest.fixture(scope="module")
def scored(tmp_path_factory, checkpoint):
    root = tmp_path_factory.mktemp("mask")
    images, texts, run = root / "images", root / "texts", root / "run"
    generate("passkey", images, n=3, lengths=(120,), digits=3, seed=4)
    generate("passkey", texts, n=3, lengths=(120,), digits=3, seed=4, modality="text")
    common = ["--model", str(checkpoint), "--out", str(run), "--answers", "gold", "--quiet"]
    assert main(["score", "ocr", "--data", str(images), *common]) == 0
    assert main(["score", "retrieval", "--data", str(texts), *common]) == 0
    return images, texts, run


def _hand_masked_replies(checkpoint, data, heads: list[Head], new: int) -> list[str]:
    """Greedy replies with the heads' slices of o_proj's input zeroed by forward pre-hooks (no ocrheads edits)."""
    adapter = load_adapter(str(checkpoint))
    layers = adapter.model.model.language_model.layers
    size = layers[0].self_attn.head_dim

    def zero(heads_here):
        def hook(_module, args):
            hidden = args[0].clone()
            for h in heads_here:
                hidden[..., h * size : (h + 1) * size] = 0
            return (hidden,)

        return hook

    for layer in {h.layer for h in heads}:
        layers[layer].self_attn.o_proj.register_forward_pre_hook(zero([h.head for h in heads if h.layer == layer]))
    replies = []
    for sample in read_manifest(data):
        pages = [open_page(data, sample, k) for k in range(len(sample.pages))]
        batch = adapter.encode([adapter.prompt(sample.question, len(pages))], [pages])
        with torch.no_grad():
            out = adapter.model.generate(**batch, max_new_tokens=new, do_sample=False, pad_token_id=0)
        written = out[0, batch["input_ids"].shape[1] :]
        replies.append(adapter.processor.tokenizer.decode(written, skip_special_tokens=True))
    return replies


def test_mask_arms_change_exactly_their_heads_and_resume_identically(scored, checkpoint, capsys):
    images, texts, run = scored
    command = ["mask", str(run), "--model", str(checkpoint), "--dataset", str(images), str(texts)]
    command += ["--k", "3", "--random-seeds", "2", "--max-new-tokens", "6", "--quiet"]
    assert main(command) == 0
    assert "| ocr-top3 |" in capsys.readouterr().out
    folder = run / "mask"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert list(config["conditions"]) == ["baseline", "ocr-top3", "retrieval-top3", "random-top3-seed0",
                                          "random-top3-seed1"]  # fmt: skip
    for seed in (0, 1):
        drawn = config["conditions"][f"random-top3-seed{seed}"]
        assert drawn == [h.name for h in random_heads((2, 4), 3, seed)] and len(set(drawn)) == 3

    predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    replies = {}
    for p in predictions:
        if p["dataset"] == "images":
            replies.setdefault(p["condition"], []).append(p["reply"])
    ocr_heads = [Head.parse(name) for name in config["conditions"]["ocr-top3"]]
    assert replies["ocr-top3"] == _hand_masked_replies(checkpoint, images, ocr_heads, 6)
    assert replies["baseline"] == _hand_masked_replies(checkpoint, images, [], 6)
    assert replies["ocr-top3"] != replies["baseline"]  # the edit did something

    rows = (folder / "results.md").read_text()
    table = (folder / "results.parquet").read_bytes()
    assert rows.count("\n") == 2 + 5 and "images direct passkey" in rows
    (folder / "parts" / "random-top3-seed1" / "texts" / "direct" / "000002.jsonl").unlink()
    (folder / "results.parquet").unlink()
    assert main(command) == 0
    assert (folder / "results.parquet").read_bytes() == table
    assert (folder / "predictions.jsonl").read_text().splitlines() == [json.dumps(p) for p in predictions]


def test_mask_refuses_bad_requests_before_writing(scored, checkpoint, tmp_path, capsys):
    images, _, run = scored
    base = ["mask", str(run), "--model", str(checkpoint), "--dataset", str(images), "--name", "refused", "--quiet"]
    assert main([*base, "--k", "99"]) == 2
    assert "k=99 heads asked for, but the model has 8" in capsys.readouterr().err
    other = tmp_path / "internvl"
    assert main(["scores", "import", REFERENCE, "--kind", "ocr", "--out", str(other)]) == 0
    assert main(["mask", str(other), *base[2:], "--k", "2"]) == 2
    assert "scores 32x32 heads, but the model has 2x4" in capsys.readouterr().err
    assert not (run / "refused").exists() and not (other / "refused").exists()
