"""Runs in which some batches score nothing (misread answers) still merge, and say why in their outcomes."""

import json

import pyarrow.parquet as pq
import pytest
import torch

from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.scoring.table import SCHEMA

from .tiny_inputs import tiny_adapter

WRITTEN = "!"  # token 0 of the byte vocabulary: what a model with all-zero logits writes, greedily, forever


@pytest.fixture(scope="module")
def bang_checkpoint(tmp_path_factory):
    """A tiny Qwen2-VL whose logits are all zero, so it writes "!!!..." whatever it is shown."""
    folder = tmp_path_factory.mktemp("bang")
    adapter = tiny_adapter("qwen2_vl")
    assert adapter.processor.tokenizer.convert_ids_to_tokens(0) == WRITTEN
    with torch.no_grad():
        adapter.model.lm_head.weight.zero_()
    adapter.model.save_pretrained(folder)
    adapter.processor.save_pretrained(folder)
    return folder


def _answerable(record: dict) -> dict:
    """The same record, its pass key replaced (in the context too) by what the bang model writes; boxes kept."""
    start, end = record["answer_span"]
    answer = WRITTEN * (end - start)
    chars = [dict(char, char=WRITTEN) for char in record["answer_chars"]]
    context = record["context"][:start] + answer + record["context"][end:]
    return dict(record, answer=answer, context=context, answer_chars=chars, answer_words=[])


def test_batches_that_score_nothing_merge_with_those_that_do(tmp_path, bang_checkpoint, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    generate("passkey", data, n=5, lengths=(150,), digits=3, seed=1, progress=False)
    lines = (data / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    records = [_answerable(r) if number in (1, 3) else r for number, r in enumerate(records)]
    (data / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    command = ["score", "ocr", "--model", str(bang_checkpoint), "--data", str(data), "--out", str(run), "--quiet"]
    assert main([*command, "--max-new-tokens", "4"]) == 0  # batches 0, 2 and 4 score nothing
    out = capsys.readouterr().out
    assert "scored 2 of 5 samples" in out and "not scored (3): the answer" in out
    for part in sorted((run / "ocr" / "parts").glob("*.parquet")):
        assert pq.read_schema(part) == SCHEMA, part.name
    table = pq.read_table(run / "ocr" / "scores.parquet")
    assert set(table.column("sample").to_pylist()) == {"passkey-00001", "passkey-00003"}
    assert table.num_rows == 2 * 3 * 2 * 4  # 2 samples x 3 digits x 2 layers x 4 heads
    assert len(json.loads((run / "ocr" / "scores.json").read_text())["l0_h0"]) == 6


def test_a_run_that_scores_nothing_writes_empty_but_valid_score_files(tmp_path, bang_checkpoint, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    generate("passkey", data, n=3, lengths=(150,), digits=3, seed=1, progress=False)
    command = ["score", "ocr", "--model", str(bang_checkpoint), "--data", str(data), "--out", str(run), "--quiet"]
    assert main([*command, "--max-new-tokens", "4", "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "scored 0 of 3 samples" in out and "not scored (3): the answer is nowhere" in out
    assert "no sample was scored" in out
    assert pq.read_table(run / "ocr" / "scores.parquet").schema == SCHEMA
    assert pq.read_table(run / "ocr" / "scores.parquet").num_rows == 0
    scores = json.loads((run / "ocr" / "scores.json").read_text())
    assert len(scores) == 8 and all(values == [] for values in scores.values())
    outcomes = [json.loads(line) for line in (run / "ocr" / "outcomes.jsonl").read_text().splitlines()]
    assert [o["scored"] for o in outcomes] == [False] * 3 and all("nowhere" in o["reason"] for o in outcomes)
