"""`ocrheads score causal` as a run kind: image and text samples, --exact beside the estimate, resume, outcomes,
bad input, and select / analyze / report treating it as a kind."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from ocrheads.analysis.runs import analyze_run
from ocrheads.attention import install
from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.data.manifest import read_manifest
from ocrheads.errors import OcrHeadsError
from ocrheads.scoring.answers import encode_samples
from ocrheads.scoring.causal import score_causal_batch
from ocrheads.scoring.kinds import CAUSAL
from ocrheads.scoring.options import CausalOptions
from ocrheads.select import SelectionRule

from .tiny_inputs import tiny_adapter


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("causal")
    generate("passkey", root / "img", n=3, lengths=(100,), digits=3, seed=1, progress=False)
    generate("passkey", root / "txt", n=3, lengths=(100,), digits=3, seed=1, modality="text", progress=False)
    return root


@pytest.mark.parametrize("modality", ["img", "txt"])
def test_a_causal_run_keeps_estimates_beside_exact_changes(datasets, checkpoint, modality, tmp_path, capsys):
    run = tmp_path / "run"
    command = ["score", "causal", "--data", str(datasets / modality), "--model", str(checkpoint), "--out", str(run),
               "--exact", "--per-token", "--batch-size", "2", "--quiet"]  # fmt: skip
    assert main(command) == 0
    assert "scored 3 of 3 samples" in capsys.readouterr().out
    table = pq.read_table(run / "causal" / "scores.parquet").to_pandas()
    answers = {s.id: len(s.answer) for s in read_manifest(datasets / modality)}  # one byte token per digit
    assert len(table) == sum(answers.values()) * 8
    assert np.allclose(table["value"], -table["exact"]) and table["estimate"].abs().max() > 0
    scores = json.loads((run / "causal" / "scores.json").read_text())
    first = table[table["sample"] == min(answers)]
    for layer, head in ((0, 0), (1, 3)):
        expected = first[(first["layer"] == layer) & (first["head"] == head)]["value"].sum()
        assert scores[f"l{layer}_h{head}"][0] == pytest.approx(expected, abs=1e-6)
    config = yaml.safe_load((run / "causal" / "config.yaml").read_text())
    assert config["options"] == CausalOptions(exact=True, per_token=True).model_dump()
    parts = sorted((run / "causal" / "parts").glob("*.parquet"))
    stamps = [part.stat().st_mtime_ns for part in parts]
    assert main(command) == 0  # resumed: nothing recomputed
    assert [part.stat().st_mtime_ns for part in parts] == stamps
    assert main([*command, "--ablation", "mean"]) == 2
    assert "options.ablation: 'zero' -> 'mean'" in capsys.readouterr().err


def test_select_analyze_and_report_treat_causal_as_a_kind(datasets, checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--model", str(checkpoint), "--out", str(run), "--quiet"]
    assert main(["score", "ocr", "--data", str(datasets / "img"), "--answers", "gold", *common]) == 0
    causal = ["score", "causal", "--data", str(datasets / "img"), "--ablation", "mean", "--exact-top", "0"]
    assert main([*causal, *common]) == 0
    assert main(["select", str(run), "--rule", "mean", "--threshold", "0"]) == 0
    assert (run / "causal_heads.json").is_file()
    assert main(["report", str(run)]) == 0
    analysis = json.loads((run / "analysis.json").read_text())
    relation = analysis["causal_relation"]["ocr"]
    assert relation["top_k"] == 8 and relation["top_k_shared"] == 8  # 8 heads: k is every head, all shared
    assert analysis["causal_method"] == {"method": "atp", "steps": 1, "ablation": "mean", "measured": None,
                                         "agreement": None}  # fmt: skip
    html = (run / "report.html").read_text()
    assert "Causal scores" in html and 'alt="attention scores against causal scores"' in html
    assert "attribution patching (first order)" in html and "not measured against ablation in this run" in html
    config = yaml.safe_load((run / "causal" / "config.yaml").read_text())
    assert config["options"]["ablation"] == "mean"


def test_a_sample_whose_answer_gives_no_tokens_is_not_scored(datasets):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    samples = read_manifest(datasets / "txt")[:2]
    samples[1] = samples[1].model_copy(update={"answer": ""})
    table = CAUSAL.table_for(adapter)
    outcomes = score_causal_batch(adapter, samples, [[], []], CausalOptions(), table, None)
    assert [o.scored for o in outcomes] == [True, False]
    assert outcomes[1].reason == "no answer tokens (the gold answer '')"
    assert set(table.to_arrow().column("sample").to_pylist()) == {samples[0].id}


def test_a_model_that_gives_no_gradients_is_refused_by_name(datasets, monkeypatch):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    samples = read_manifest(datasets / "txt")[:1]

    def no_gradients(*args, **kwargs):
        raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")

    monkeypatch.setattr(torch.autograd, "grad", no_gradients)
    with pytest.raises(OcrHeadsError, match="the model gives no gradients"):
        score_causal_batch(adapter, samples, [[]], CausalOptions(), CAUSAL.table_for(adapter), None)


def test_a_mixed_dataset_is_refused_before_loading(datasets, checkpoint, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    generate("passkey", mixed, n=1, lengths=(100,), digits=3, seed=1, progress=False)
    lines = (mixed / "manifest.jsonl").read_text() + (datasets / "txt" / "manifest.jsonl").read_text().splitlines()[0]
    (mixed / "manifest.jsonl").write_text(lines + "\n")
    command = ["score", "causal", "--data", str(mixed), "--model", str(checkpoint), "--out", str(tmp_path / "r")]
    assert main(command) == 2
    assert "causal scoring needs samples of one modality" in capsys.readouterr().err


def test_the_whole_answer_estimate_is_the_sum_of_the_per_token_ones(datasets):
    """One backward pass for the whole answer gives what one per token gives, summed (the gradient is linear)."""
    adapter = tiny_adapter("llava")
    install(adapter.model)
    samples = read_manifest(datasets / "txt")
    whole, per_token = CAUSAL.table_for(adapter), CAUSAL.table_for(adapter)
    for table, option in ((whole, False), (per_token, True)):
        score_causal_batch(adapter, samples, [[]] * 3, CausalOptions(per_token=option, exact=True), table, None)
    whole, per_token = whole.to_arrow().to_pandas(), per_token.to_arrow().to_pandas()
    assert set(whole["token"]) == {-1} and len(whole) == 3 * 8
    summed = per_token.groupby(["sample", "layer", "head"])[["estimate", "exact"]].sum().reset_index()
    merged = whole.merge(summed, on=["sample", "layer", "head"], suffixes=("", "_summed"))
    assert np.allclose(merged["estimate"], merged["estimate_summed"], atol=1e-6)
    assert np.allclose(merged["exact"], merged["exact_summed"], atol=1e-6)


def test_generated_answers_are_what_the_model_writes_greedily(datasets):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    samples = read_manifest(datasets / "txt")[:2]
    table = CAUSAL.table_for(adapter)
    options = CausalOptions(answers="generated", max_new_tokens=3)
    outcomes = score_causal_batch(adapter, samples, [[], []], options, table, None)
    batch = encode_samples(adapter, samples, [[], []])
    tokenizer = adapter.processor.tokenizer
    with torch.no_grad():
        pad = tokenizer.pad_token_id
        written = adapter.model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=pad)
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in written[:, batch["input_ids"].shape[1] :]]
    assert [o.written for o in outcomes if o.scored] == [t for t in texts if t]
    assert all(o.entries == 3 for o in outcomes if o.scored)


def test_micro_batches_respect_the_token_budget_and_keep_short_items_together():
    from ocrheads.scoring.causal import micro_batches

    # by length: items 1 (10), 3 (12), 2 (20), 0 (30); 2 x 12 = 24 fits 40, 3 x 20 = 60 does not, nor 2 x 30
    assert micro_batches([30, 10, 20, 12], 40) == [[1, 3], [2], [0]]
    assert micro_batches([30, 10, 20, 12], 120) == [[1, 3, 2, 0]]
    assert micro_batches([50, 5], 40) == [[1], [0]]  # an item over the budget is scored alone


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_a_batch_split_into_micro_batches_scores_as_one_pass(datasets, ablation):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    samples = read_manifest(datasets / "txt")
    samples = [samples[0].model_copy(update={"answer": "1"}), *samples[1:]]  # answers of other lengths
    pages = [[] for _ in samples]
    means = None
    if ablation == "mean":
        from ocrheads.eval.means import prompt_means

        means = prompt_means(adapter, [encode_samples(adapter, samples, pages)])
    options = CausalOptions(exact=True, per_token=True, ablation=ablation)
    passes = []  # the batch size of each forward pass with gradients: the passes the budget bounds

    def record(module, args, kwargs):
        if torch.is_grad_enabled():
            passes.append(kwargs["input_ids"].shape[0])

    hook = adapter.model.register_forward_pre_hook(record, with_kwargs=True)
    tables = []
    for budget, sizes in ((10**6, [len(samples)]), (1, [1] * len(samples))):  # one pass, then every item alone
        table = CAUSAL.table_for(adapter)
        outcomes = score_causal_batch(adapter, samples, pages, options, table, means, max_batch_tokens=budget)
        assert all(outcome.scored for outcome in outcomes)
        assert passes == sizes
        passes.clear()
        tables.append(table.arrays())
    hook.remove()
    one, split = tables
    assert list(one["sample"]) == list(split["sample"]) and list(one["token"]) == list(split["token"])
    for column in ("estimate", "exact"):
        np.testing.assert_allclose(split[column], one[column], rtol=1e-4, atol=1e-6)


def test_a_two_stage_run_measures_each_samples_top_estimated_heads_and_scores_them_by_ablation(
    datasets, checkpoint, tmp_path, capsys
):
    """--exact-top 3: per sample, exactly the 3 heads with the largest estimated drop are measured (the rest keep
    their estimate as the score), with the measured values of a full --exact run; --method ig --steps is pinned."""
    common = ["--data", str(datasets / "txt"), "--model", str(checkpoint), "--batch-size", "3", "--quiet"]
    assert main(["score", "causal", *common, "--out", str(tmp_path / "full"), "--exact"]) == 0
    two_stage = ["score", "causal", *common, "--out", str(tmp_path / "top"), "--exact-top", "3"]
    assert main(two_stage) == 0
    full = pq.read_table(tmp_path / "full" / "causal" / "scores.parquet").to_pandas()
    top = pq.read_table(tmp_path / "top" / "causal" / "scores.parquet").to_pandas()
    for sample, rows in top.groupby("sample"):
        measured = rows[rows["exact"].notna()]
        expected = rows.nsmallest(3, "estimate")  # the largest drops
        heads = [sorted(zip(rows["layer"], rows["head"], strict=True)) for rows in (measured, expected)]
        assert heads[0] == heads[1]
        reference = full[full["sample"] == sample].set_index(["layer", "head"])["exact"]
        for _, row in measured.iterrows():
            assert row["exact"] == pytest.approx(reference[row["layer"], row["head"]], abs=1e-5)
            assert row["value"] == -row["exact"]
        rest = rows[rows["exact"].isna()]
        assert np.array_equal(rest["value"], -rest["estimate"])
    per_head = full.groupby(["layer", "head"])[["estimate", "exact"]].mean()
    agreement = analyze_run(tmp_path / "full", SelectionRule())["causal_method"]["agreement"]
    assert agreement["heads"] == 8
    assert agreement["spearman"] == pytest.approx(per_head["estimate"].corr(per_head["exact"], method="spearman"))
    top = [set(per_head.nsmallest(3, column).index) for column in ("estimate", "exact")]
    found = analyze_run(tmp_path / "top", SelectionRule(), top_k=3)["causal_method"]
    assert found["measured"] == "each sample's top 3 estimated heads" and found["agreement"]["top_k"] is None
    assert analyze_run(tmp_path / "full", SelectionRule(), top_k=3)["causal_method"]["agreement"]["top_k"] == {
        "k": 3, "shared": len(top[0] & top[1])}  # fmt: skip
    ig = ["score", "causal", *common, "--out", str(tmp_path / "ig"), "--method", "ig", "--steps", "2"]
    assert main(ig) == 0
    config = yaml.safe_load((tmp_path / "ig" / "causal" / "config.yaml").read_text())
    assert config["options"]["method"] == "ig" and config["options"]["steps"] == 2
    estimates = pq.read_table(tmp_path / "ig" / "causal" / "scores.parquet").to_pandas()["estimate"]
    assert not np.allclose(estimates, full["estimate"])  # the path moved the estimate


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--steps", "4"], "steps apply to the ig method only"), (["--exact", "--exact-top", "2"], "not both")],
)
def test_inconsistent_causal_options_are_refused_with_the_fix(datasets, checkpoint, tmp_path, capsys, flags, message):
    command = ["score", "causal", "--data", str(datasets / "txt"), "--model", str(checkpoint),
               "--out", str(tmp_path / "r"), *flags]  # fmt: skip
    assert main(command) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
