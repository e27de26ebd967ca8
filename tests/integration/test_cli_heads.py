"""`ocrheads scores import | score | select | analyze` end to end, with resume and refusals."""

import json
from pathlib import Path

import pyarrow.parquet as pq

from ocrheads.cli import main
from ocrheads.data.generate import generate

REFERENCE = Path(__file__).parents[1] / "data" / "InternVL2-8B_fg_2.json"


def test_imported_reference_scores_select_and_analyze_like_the_paper(tmp_path, capsys):
    run = tmp_path / "internvl"
    assert main(["scores", "import", str(REFERENCE), "--kind", "ocr", "--out", str(run)]) == 0
    assert main(["select", str(run), "--rule", "code"]) == 0
    heads = json.loads((run / "ocr_heads.json").read_text())
    assert len(heads["heads"]) == 44 and heads["heads"][:3] == ["l9_h0", "l7_h4", "l7_h6"]
    assert 0 < heads["robust"]["heads"] < 44 and heads["robust"]["replicates"] == 1000
    assert main(["analyze", str(run), "--rule", "code"]) == 0
    analysis = json.loads((run / "analysis.json").read_text())
    assert analysis["ocr"]["robust"] == heads["robust"]["heads"]  # the same seeded bootstrap
    assert list(analysis["ocr"]["bins"].values()) == [0, 895, 85, 32, 6, 6]
    assert "ocr: 44 heads above the rule" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "empty")]) == 2
    assert "holds no scores" in capsys.readouterr().err


def test_head_lists_of_another_model_are_refused(tmp_path, checkpoint, capsys):
    run, data = tmp_path / "internvl", tmp_path / "data"
    generate("passkey", data, n=1, lengths=(100,), digits=3, seed=1)
    assert main(["scores", "import", str(REFERENCE), "--kind", "ocr", "--out", str(run)]) == 0
    overlay = ["overlay", str(run), "--model", str(checkpoint), "--data", str(data), "--sample", "passkey-00000"]
    assert main(overlay) == 2
    assert "scores 32x32 heads, but the model has 2x4" in capsys.readouterr().err
    assert main([*overlay, "--heads", "l9_h0"]) == 2
    assert "l9_h0 outside the model's 2x4 heads" in capsys.readouterr().err
    assert not (run / "overlays").exists()


def test_scoring_runs_resume_without_redoing_finished_batches(tmp_path, checkpoint, capsys):
    data = tmp_path / "data"
    generate("passkey", data, n=3, lengths=(150,), digits=3, seed=1)
    run = tmp_path / "run"
    command = ["score", "ocr", "--model", str(checkpoint), "--data", str(data), "--out", str(run)]
    command += ["--answers", "gold", "--batch-size", "2", "--quiet"]
    assert main(command) == 0
    assert "scored 3 of 3 samples" in capsys.readouterr().out
    table = pq.read_table(run / "ocr" / "scores.parquet")
    scores = json.loads((run / "ocr" / "scores.json").read_text())
    assert len(scores) == 2 * 4 and len(scores["l0_h0"]) == 9  # 3 samples x 3 digits
    assert table.num_rows == 9 * 8 and set(table.column("c").to_pylist()) == {1.0}
    first = run / "ocr" / "parts" / "000000.parquet"
    stamp = first.stat().st_mtime_ns
    (run / "ocr" / "parts" / "000001.parquet").unlink()  # as if killed during the second batch
    (run / "ocr" / "scores.json").unlink()
    assert main(command) == 0
    assert first.stat().st_mtime_ns == stamp
    assert json.loads((run / "ocr" / "scores.json").read_text()) == scores
    assert main([*command, "--row", "consuming"]) == 2
    assert "options.row: 'producing' -> 'consuming'" in capsys.readouterr().err
    retrieval = ["score", "retrieval", "--model", str(checkpoint), "--data", str(data), "--out", str(run), "--quiet"]
    assert main(retrieval) == 2
    assert "needs text samples, but passkey-00000" in capsys.readouterr().err


def test_an_ocr_run_on_samples_without_boxes_is_refused_before_anything_is_written(tmp_path, checkpoint, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    generate("passkey", data, n=2, lengths=(100,), digits=3, seed=1)
    records = [json.loads(line) for line in (data / "manifest.jsonl").read_text().splitlines()]
    for record in records[1:]:
        record["answer_chars"] = [dict(char, page=None, box=None) for char in record["answer_chars"]]
        record["answer_words"] = []
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    command = ["score", "ocr", "--model", str(checkpoint), "--data", str(data), "--out", str(run), "--quiet"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "sample passkey-00001 in" in err and "has no answer boxes" in err
    assert not run.exists()
