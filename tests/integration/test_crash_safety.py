"""A run killed with SIGKILL at any point and started again with the same command ends with exactly the results
of an uninterrupted run: no sample lost, none counted twice, no half-written file read back. The kills come from
the run itself at chosen points (the parts loop's test hook), so the test does not race the run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ocrheads.data.generate import generate
from ocrheads.run.parts import KILL_AFTER_PARTS

RESULTS = {
    "score": ["ocr/scores.parquet", "ocr/scores.json", "ocr/outcomes.jsonl"],
    "mask": ["mask/results.parquet", "mask/predictions.jsonl", "mask/results.md"],
}


def _command(kind: str, checkpoint: Path, data: Path, run: Path) -> list[str]:
    base = [sys.executable, "-m", "ocrheads"]
    if kind == "score":
        return [*base, "score", "ocr", "--data", str(data), "--model", str(checkpoint), "--out", str(run),
                "--answers", "gold", "--quiet"]  # fmt: skip
    return [*base, "mask", str(run), "--model", str(checkpoint), "--dataset", str(data), "--k", "2",
            "--random-seeds", "2", "--max-new-tokens", "4", "--quiet"]  # fmt: skip


def _run_killed_after(command: list[str], parts: int) -> None:
    """Run the command, which kills itself with SIGKILL once it has written `parts` part files (0: before the
    first; the parts loop's test hook), and check that the kill, not the end of the run, stopped it."""
    environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1", **{KILL_AFTER_PARTS: str(parts)})
    process = subprocess.run(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert process.returncode == -signal.SIGKILL, f"the run ended ({process.returncode}) before its kill"


def _finish(command: list[str]) -> None:
    environment = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def scored(tmp_path_factory, checkpoint):
    root = tmp_path_factory.mktemp("crash")
    data = root / "images"
    generate("passkey", data, n=6, lengths=(120,), digits=3, seed=9)
    reference = root / "reference"
    _finish(_command("score", checkpoint, data, reference))
    _finish(_command("mask", checkpoint, data, reference))
    return root, data, reference


@pytest.mark.parametrize("kind", ["score", "mask"])
def test_killed_runs_resume_to_the_uninterrupted_results(scored, checkpoint, kind):
    root, data, reference = scored
    run = root / f"killed-{kind}"
    if kind == "mask":  # masking needs scores to rank heads: take the reference run's
        _finish(_command("score", checkpoint, data, run))
    for parts in (0, 2, 3):  # before the first part, then after two, then three more
        _run_killed_after(_command(kind, checkpoint, data, run), parts)
        assert not (run / RESULTS[kind][0]).exists()
    _finish(_command(kind, checkpoint, data, run))
    for name in RESULTS[kind]:
        assert (run / name).read_bytes() == (reference / name).read_bytes(), name
