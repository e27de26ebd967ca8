"""The command line builds only the arguments of the command it runs, from settings that need no torch: every
command's `--help`, and the commands that load no model, start without torch, transformers, matplotlib or scipy
(seconds each, scipy.stats half a second); and every command's own arguments still build."""

import subprocess
import sys
from pathlib import Path

import pytest

from ocrheads.cli import GROUPS, main

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "matplotlib", "scipy")
RUN_ARGV = "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"


def _probe(run: str = RUN_ARGV) -> str:
    """A script for a fresh process: `run` (code that calls `main`), then a last line naming the heavy modules."""
    return f"import sys\nfrom ocrheads.cli import main\n{run}print(' '.join(m for m in {HEAVY} if m in sys.modules))\n"


def _heavy_imports(argv: list[str]) -> tuple[str, list[str]]:
    """What `ocrheads ARGV` prints in a fresh process, and the heavy modules it imported."""
    found = subprocess.run([sys.executable, "-c", _probe(), *argv], capture_output=True, text=True, check=True)
    return found.stdout, found.stdout.splitlines()[-1].split()


@pytest.mark.parametrize("argv", [["--help"], ["data", "passkey", "--help"], ["select", "--help"]])
def test_help_and_model_free_commands_start_without_heavy_imports(argv):
    printed, heavy = _heavy_imports(argv)
    assert "usage: ocrheads" in printed
    assert heavy == [], heavy


def test_every_command_s_help_starts_without_heavy_imports():
    """One process builds every command's help in turn (a process each would take a minute)."""
    commands = [name for group in GROUPS for name in group.COMMANDS]
    each = "for name in sys.argv[1:]:\n    try:\n        main([name, '--help'])\n    except SystemExit:\n        pass\n"
    found = subprocess.run([sys.executable, "-c", _probe(each), *commands], capture_output=True, text=True, check=True)
    usages = [line.split()[2] for line in found.stdout.splitlines() if line.startswith("usage: ocrheads ")]
    assert usages == commands
    assert found.stdout.splitlines()[-1].split() == []


def test_the_commands_that_only_read_runs_run_without_torch(tmp_path):
    """Import the paper's published scores, then select, analyze, report and export them, in one process: none of it
    loads a model, so none of it may wait seconds for torch or transformers (analyze and report draw, with
    matplotlib, and correlate scores, with scipy)."""
    run, scores = str(tmp_path / "run"), str(ROOT / "tests" / "data" / "InternVL2-8B_fg_2.json")
    steps = [["scores", "import", scores, "--kind", "ocr", "--out", run], ["select", run], ["analyze", run],
             ["report", run], ["heads", "export", run, "--to", "json"]]  # fmt: skip
    each = "".join(f"assert main({step!r}) in (0, None)\n" for step in steps)
    found = subprocess.run([sys.executable, "-c", _probe(each)], cwd=tmp_path, capture_output=True, text=True,
                           check=True)  # fmt: skip
    assert (tmp_path / "run" / "report.html").is_file() and "wrote" in found.stdout
    assert found.stdout.splitlines()[-1].split() == ["matplotlib", "scipy"]


def test_the_heavy_imports_are_seen_where_a_command_needs_them():
    """The probe itself can fail: verify loads a model, so it imports torch before it finds no checkpoint."""
    printed, heavy = _heavy_imports(["verify", "--model", "/nonexistent/checkpoint"])
    assert "there is no folder /nonexistent/checkpoint" in printed or heavy  # (the error goes to stderr)
    assert "torch" in heavy and "transformers" in heavy


@pytest.mark.parametrize("command", [name for group in GROUPS for name in group.COMMANDS])
def test_every_command_builds_its_arguments(command, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main([command, "--help"])
    assert exit_code.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ocrheads {command} [-h]")
