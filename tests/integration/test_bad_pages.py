"""A sample whose page cannot be read (truncated, not an image, missing) costs that sample, not the run, in every
command that reads pages: score, overlay, mask and sink record it with why and go on with the good samples in its
batch; --stop-at-bad-page stops at the first instead, naming it."""

import json

import pyarrow.parquet as pq
import pytest

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.data.manifest import read_manifest

BAD = {"passkey-00001": "truncated", "passkey-00002": "not an image", "passkey-00005": "missing"}
GOOD = ["passkey-00000", "passkey-00003", "passkey-00004"]


def _damage(data) -> None:
    """Batches of two, [0 1] [2 3] [4 5], each hold one bad page beside a good one."""
    for sample in read_manifest(data):
        page = data / sample.pages[0]
        if BAD.get(sample.id) == "truncated":
            page.write_bytes(page.read_bytes()[:200])
        elif BAD.get(sample.id) == "not an image":
            page.write_text("this is a page of text, not a PNG")
        elif BAD.get(sample.id) == "missing":
            page.unlink()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, checkpoint):
    root = tmp_path_factory.mktemp("bad")
    clean, data, run = root / "clean", root / "data", root / "run"
    generate("passkey", clean, n=6, lengths=(120,), digits=3, seed=4, progress=False)
    generate("passkey", data, n=6, lengths=(120,), digits=3, seed=4, progress=False)
    _damage(data)
    return clean, data, run, ["--model", str(checkpoint), "--quiet"]


def _score(kind: str, data, run, model: list[str], *extra: str) -> int:
    command = ["score", kind, "--data", str(data), "--out", str(run), "--answers", "gold", "--batch-size", "2"]
    return main([*command, *model, *extra])


def test_scoring_records_bad_pages_and_scores_the_rest_as_a_clean_set_would(damaged, tmp_path, capsys):
    clean, data, run, model = damaged
    assert _score("ocr", data, run, model) == 0
    out = capsys.readouterr().out
    assert "scored 3 of 6 samples" in out and "not scored (3): unreadable page" in out
    outcomes = [json.loads(line) for line in (run / "ocr" / "outcomes.jsonl").read_text().splitlines()]
    assert [o["sample"] for o in outcomes] == [f"passkey-0000{n}" for n in range(6)]
    for outcome in outcomes:
        assert outcome["scored"] == (outcome["sample"] in GOOD), outcome
        if outcome["sample"] in BAD:
            assert outcome["reason"].startswith("unreadable page (") and "page_000.png" in outcome["reason"]
    scored = pq.read_table(run / "ocr" / "scores.parquet").to_pandas()
    reference = tmp_path / "reference"
    assert _score("ocr", clean, reference, model) == 0
    expected = pq.read_table(reference / "ocr" / "scores.parquet").to_pandas()
    expected = expected[expected["sample"].isin(GOOD)].reset_index(drop=True)
    assert sorted(set(scored["sample"])) == GOOD
    assert scored.drop(columns="value").equals(expected.drop(columns="value"))
    assert (scored["value"] - expected["value"]).abs().max() < 1e-5


def test_causal_means_leave_bad_pages_out_and_score_the_rest(damaged, tmp_path, capsys):
    _, data, _, model = damaged
    run = tmp_path / "run"
    assert _score("causal", data, run, model, "--ablation", "mean", "--mean-samples", "3") == 0
    assert "scored 3 of 6 samples" in capsys.readouterr().out
    outcomes = [json.loads(line) for line in (run / "causal" / "outcomes.jsonl").read_text().splitlines()]
    assert {o["sample"] for o in outcomes if o["scored"]} == set(GOOD)


@pytest.mark.parametrize("kind", ["ocr", "causal"])
def test_stop_at_bad_page_stops_scoring_at_the_first(damaged, tmp_path, capsys, kind):
    _, data, _, model = damaged
    assert _score(kind, data, tmp_path / "run", model, "--stop-at-bad-page") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: sample passkey-00001: cannot read page") and "truncated" in error


def test_overlays_draw_the_good_samples_and_name_the_bad(damaged, capsys):
    _, data, run, model = damaged
    overlay = ["overlay", str(run), "--data", str(data), "--heads", "l0_h0", "--sample", "passkey-00000"]
    model = model[:2]  # overlay draws without a progress bar to quiet
    assert main([*overlay, "passkey-00002", *model]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 attention overlays" in out and "not drawn: sample passkey-00002: unreadable page" in out
    assert sorted(path.name for path in (run / "overlays").glob("*.png")) == ["passkey-00000_l0_h0_page0.png"]
    assert main([*overlay, "passkey-00005", *model, "--stop-at-bad-page"]) == 2
    assert "sample passkey-00005: cannot read page" in capsys.readouterr().err


@pytest.mark.parametrize("experiment", ["mask", "sink"])
def test_interventions_skip_bad_pages_with_why_and_run_the_rest(damaged, capsys, experiment):
    _, data, run, model = damaged
    if not (run / "ocr" / "scores.json").is_file():
        assert _score("ocr", data, run, model) == 0
    arms = [experiment, str(run), "--dataset", str(data), "--random-seeds", "1", "--max-new-tokens", "3"]
    arms += ["--k", "2"] if experiment == "mask" else ["--top", "2"]
    assert main([*arms, *model, "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "not run (3 samples): unreadable page" in out
    predictions = [json.loads(line) for line in (run / experiment / "predictions.jsonl").read_text().splitlines()]
    assert predictions and {r["id"] for r in predictions if "reply" in r} == set(GOOD)
    assert all(r["skipped"].startswith("unreadable page (") for r in predictions if r["id"] in BAD)
    results = pq.read_table(run / experiment / "results.parquet").to_pylist()
    assert results and all((row["skipped"], row["n"]) == (3, 3) for row in results if "pooled" not in row["condition"])
    assert main([*arms, *model, "--name", f"{experiment}-strict", "--stop-at-bad-page"]) == 2
    assert "sample passkey-00001: cannot read page" in capsys.readouterr().err
