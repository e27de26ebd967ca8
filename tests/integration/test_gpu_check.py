"""scripts/gpu_check.sh, dry run on the CPU with tiny shapes: every step of the GPU check runs, so the script a GPU
session runs in one call cannot rot; and ocrheads runs uninstalled, from src/ on the path, as it does there."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_the_gpu_check_dry_run_passes_every_step(tmp_path):
    run = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run", str(tmp_path)],
        cwd=ROOT, env=os.environ | {"PYTHON": sys.executable}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert sorted(path.name for path in tmp_path.iterdir()) == ["gpu-check.log", "results.md"]
    results = (tmp_path / "results.md").read_text()
    steps = [line.split("|")[1:3] for line in results.split("\n\n")[0].splitlines()[2:]]
    assert len(steps) == 14, results
    assert all(status.strip() == "ok" for _, status in steps), results
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "| tiny | 512 |" in results and "causal estimate" in results  # the benchmark's tables follow
    samples, pages = map(int, re.search(r"(\d+) samples, (\d+) pages", results).groups())
    assert pages > samples  # prompts of several pages, as the paper's passkeys have on a GPU


def test_a_failed_table_says_why_the_next_still_runs_and_the_benchmark_fails(monkeypatch, capsys):
    """The GPU check has one call: a table that runs out of memory must not cost it the tables after it, nor pass."""
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\n(details)")

    sections = {"capture": out_of_memory, "causal": lambda: "| causal table |\n"}
    monkeypatch.setattr(bench, "shape_sections", lambda *args: sections)
    monkeypatch.setattr(sys, "argv", ["bench_gpu.py", "--dry-run"])
    with pytest.raises(SystemExit, match="failed: tiny capture "):
        bench.main()
    printed = capsys.readouterr().out
    assert "tiny capture: failed, OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n" in printed
    assert printed.index("tiny capture: failed") < printed.index("| causal table |")


UNINSTALLED = """
import importlib.metadata, sys
found = importlib.metadata.version
def version(name):
    if name == "ocrheads":
        raise importlib.metadata.PackageNotFoundError(name)  # as on a machine where it is not installed
    return found(name)
importlib.metadata.version = version
from ocrheads.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ocrheads_runs_uninstalled_from_src(tmp_path):
    """A bare GPU machine runs ocrheads from src/ with carried wheels: nothing may ask for its distribution."""
    env = os.environ | {"PYTHONPATH": str(ROOT / "src")}
    data = tmp_path / "data"
    commands = [
        ["data", "passkey", "--n", "1", "--lengths", "120", "--out", str(data), "--quiet"],
        ["score", "ocr", "--model", "src/ocrheads/demo/model", "--data", str(data), "--out", str(tmp_path / "run"),
         "--answers", "gold", "--quiet"],
    ]  # fmt: skip
    for command in commands:
        run = subprocess.run([sys.executable, "-c", UNINSTALLED, *command], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)  # fmt: skip
        assert run.returncode == 0, run.stderr[-2000:]
    assert "ocrheads: 0.1.0" in (tmp_path / "run" / "ocr" / "config.yaml").read_text()
