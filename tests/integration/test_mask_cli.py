"""`ocrheads mask` on a tiny random model: the masked arms change exactly their heads (checked against the same
heads zeroed by hand at the input of o_proj), random arms come from their seeds, and a resumed run is identical."""

import json

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.data.manifest import open_page, read_manifest
from ocrheads.eval.conditions import random_heads
from ocrheads.eval.prompts import final_answer
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


def _encoded(adapter, data):
    for sample in read_manifest(data):
        pages = [open_page(data, sample, k) for k in range(len(sample.pages))]
        yield adapter.encode([adapter.prompt(sample.question, len(pages))], [pages])


def _hand_masked_replies(checkpoint, data, heads: list[Head], new: int, values: dict | None = None) -> list[str]:
    """Greedy replies with the heads' slices of o_proj's input set by forward pre-hooks (no ocrheads edits):
    to values[head] where given, else to zero."""
    adapter = load_adapter(str(checkpoint))
    layers = adapter.model.model.language_model.layers
    size = layers[0].self_attn.head_dim
    values = values or {}

    def replace(heads_here):
        def hook(_module, args):
            hidden = args[0].clone()
            for h in heads_here:
                hidden[..., h.head * size : (h.head + 1) * size] = values.get(h, 0)
            return (hidden,)

        return hook

    for layer in {h.layer for h in heads}:
        layers[layer].self_attn.o_proj.register_forward_pre_hook(replace([h for h in heads if h.layer == layer]))
    replies = []
    for batch in _encoded(adapter, data):
        with torch.no_grad():
            out = adapter.model.generate(**batch, max_new_tokens=new, do_sample=False, pad_token_id=0)
        written = out[0, batch["input_ids"].shape[1] :]
        replies.append(adapter.processor.tokenizer.decode(written, skip_special_tokens=True))
    return replies


def _hand_head_means(checkpoint, data, heads: list[Head], samples: int) -> dict:
    """Each head's mean slice of o_proj's input over every prompt token of the first samples (one per batch)."""
    adapter = load_adapter(str(checkpoint))
    layers = adapter.model.model.language_model.layers
    inputs = {layer: [] for layer in {h.layer for h in heads}}
    for layer, seen in inputs.items():
        layers[layer].self_attn.o_proj.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0][0]))
    for _, batch in zip(range(samples), _encoded(adapter, data), strict=False):
        with torch.no_grad():
            adapter.model(**batch)
    size = layers[0].self_attn.head_dim
    return {h: torch.cat(inputs[h.layer])[:, h.head * size : (h.head + 1) * size].mean(0) for h in heads}


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
    assert rows.count("\n") == 2 + 6 and "images direct passkey" in rows  # 5 arms and the random seeds pooled
    results = pq.read_table(folder / "results.parquet").to_pylist()
    pooled = next(r for r in results if r["condition"] == "random-top3-pooled" and r["dataset"] == "images")
    seeds = [r for r in results if r["group"] == "random" and r["seed"] is not None and r["metric"] == pooled["metric"]
             and r["dataset"] == "images"]  # fmt: skip
    assert pooled["n"] == 6 and pooled["mean"] == pytest.approx(sum(r["mean"] for r in seeds) / 2)
    (folder / "parts" / "random-top3-seed1" / "texts" / "direct" / "000002.jsonl").unlink()
    (folder / "results.parquet").unlink()
    assert main(command) == 0
    assert (folder / "results.parquet").read_bytes() == table
    assert (folder / "predictions.jsonl").read_text().splitlines() == [json.dumps(p) for p in predictions]


def test_mean_ablation_replaces_heads_with_their_hand_computed_means(scored, checkpoint):
    images, _, run = scored
    command = ["mask", str(run), "--model", str(checkpoint), "--dataset", str(images), "--name", "mean"]
    assert main([*command, "--mode", "mean", "--mean-samples", "2", "--k", "3", "--random-seeds", "0", "--quiet",
                 "--max-new-tokens", "6"]) == 0  # fmt: skip
    folder = run / "mean"
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["intervention"]["mode"] == "mean" and config["intervention"]["mean_samples"] == 2
    predictions = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    replies = [p["reply"] for p in predictions if p["condition"] == "ocr-top3"]
    heads = [Head.parse(name) for name in config["conditions"]["ocr-top3"]]
    means = _hand_head_means(checkpoint, images, heads, 2)
    assert replies == _hand_masked_replies(checkpoint, images, heads, 6, means)
    assert replies != _hand_masked_replies(checkpoint, images, heads, 6)  # not the same as zeroing


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


def test_sink_arms_and_chain_of_thought_prompts(scored, checkpoint, capsys):
    images, _, run = scored
    command = ["sink", str(run), "--model", str(checkpoint), "--dataset", str(images), "--top", "2", "--quiet"]
    command += ["--random-seeds", "1", "--max-new-tokens", "5", "--cot-max-new-tokens", "7"]
    command += ["--prompts", "direct", "cot"]
    assert main([*command, "--beta", "0.0", "--name", "sink0"]) == 0
    assert main([*command, "--beta", "1.0", "--name", "sink1"]) == 0
    capsys.readouterr()

    def replies(name):
        found = {}
        for line in (run / name / "predictions.jsonl").read_text().splitlines():
            p = json.loads(line)
            found.setdefault((p["condition"], p["prompt"]), []).append(p)
        return found

    moved, kept = replies("sink0"), replies("sink1")
    assert set(moved) == {(c, p) for c in ("baseline", "ocr-top2", "retrieval-top2", "random-top2-seed0")
                          for p in ("direct", "cot")}  # fmt: skip
    for arm, records in kept.items():  # beta 1: the sink keeps all its mass, nothing changes
        assert [r["reply"] for r in records] == [r["reply"] for r in kept["baseline", arm[1]]]
    assert any(moved[arm] != moved["baseline", arm[1]] for arm in moved)  # beta 0 moves all of it
    cot = moved["baseline", "cot"][0]
    assert cot["answer"] == final_answer(cot["reply"], "cot")
    config = yaml.safe_load((run / "sink0" / "config.yaml").read_text())
    assert config["intervention"] == {
        "kind": "sink",
        "mode": "zero",
        "mean_samples": 32,
        "beta": 0.0,
        "sinks": "first",
        "sink_tokens": 1,
        "sink_threshold": 0.3,
        "receivers": "all",
    }
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "<h2>Intervention: sink0</h2>" in html and "beta 0.0" in html
    assert html.count('<td class="heads">ocr-top2</td>') == 2  # the sink0 and sink1 tables
