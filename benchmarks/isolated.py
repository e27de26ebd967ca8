"""Run one benchmark cell in its own process, so its peak memory is its alone."""

from __future__ import annotations

import json
import subprocess
import sys


def run_isolated(script: str, method: str, length: int) -> dict:
    """`script --worker METHOD LENGTH` in a fresh interpreter; its last stdout line is the cell's JSON."""
    out = subprocess.run([sys.executable, script, "--worker", method, str(length)], capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result, file=sys.stderr)
    return result
