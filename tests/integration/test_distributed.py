"""Sharded runs: `score` and `mask` under torchrun with two gloo processes on CPU write, after the automatic merge,
exactly the files a single process writes."""

import os
import subprocess
import sys

import pytest

from ocrheads.data.generate import generate

MERGED = ["ocr/scores.parquet", "ocr/scores.json", "ocr/outcomes.jsonl", "retrieval/scores.parquet",
          "retrieval/outcomes.jsonl", "mask/results.parquet", "mask/predictions.jsonl"]  # fmt: skip


def _run(launcher: list[str], arguments: list[str]) -> None:
    environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    found = subprocess.run([*launcher, "-m", "ocrheads", *arguments], env=environment, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-3000:]


def _pipeline(launcher, checkpoint, images, texts, run):
    common = ["--model", str(checkpoint), "--out", str(run), "--quiet"]
    _run(launcher, ["score", "ocr", "--data", str(images), "--answers", "gold", *common])
    _run(launcher, ["score", "retrieval", "--data", str(texts), "--answers", "gold", *common])
    _run(launcher, ["mask", str(run), "--model", str(checkpoint), "--dataset", str(images), str(texts), "--k", "2",
                    "--random-seeds", "2", "--max-new-tokens", "4", "--quiet"])  # fmt: skip


def test_two_gloo_ranks_merge_to_the_single_process_results(tmp_path, checkpoint):
    pytest.importorskip("torch.distributed.run")
    images, texts = tmp_path / "images", tmp_path / "texts"
    generate("passkey", images, n=5, lengths=(120,), digits=3, seed=2)  # odd, so the ranks get unequal shares
    generate("passkey", texts, n=5, lengths=(120,), digits=3, seed=2, modality="text")
    _pipeline([sys.executable], checkpoint, images, texts, tmp_path / "single")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _pipeline(torchrun, checkpoint, images, texts, tmp_path / "sharded")
    for name in MERGED:
        assert (tmp_path / "sharded" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
