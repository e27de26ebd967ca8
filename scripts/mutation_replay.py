"""Replay a finished `make mutation` session's survivors against today's code and tests: each surviving mutant's
diff is applied to a fresh copy of the module and the module's tests run, as cosmic-ray ran them. What the new tests
kill shows without rerunning every mutant (hours for the modules whose tests build models).

    .venv-mutation/bin/python scripts/mutation_replay.py NAME     (NAME: the folder under .mutation/, e.g. retrieval)

Each survivor is KILLED (a test fails now), SURVIVED, or GONE (its line no longer exists: the code changed there).
"""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome

root = Path(__file__).resolve().parent.parent
work = root / ".mutation" / sys.argv[1]
config = tomllib.loads((work / "cosmic-ray.toml").read_text())["cosmic-ray"]
module = config["module-path"]
with use_db(str(work / "session.sqlite"), WorkDB.Mode.open) as db:
    results = list(db.completed_work_items)
survivors = [(item, result) for item, result in results if result.test_outcome == TestOutcome.SURVIVED]

replay = work / "replay"
shutil.rmtree(replay, ignore_errors=True)
replay.mkdir()
for part in ("src", "tests", "pyproject.toml"):
    copy = shutil.copytree if (root / part).is_dir() else shutil.copy2
    copy(root / part, replay / part)
env = os.environ | {"PYTHONPATH": str(replay / "src"), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
counts = {"KILLED": 0, "SURVIVED": 0, "GONE": 0}
for item, result in survivors:
    shutil.copy2(root / module, replay / module)
    diff = result.diff.split("\n", 1)[1]  # after cosmic-ray's "--- mutation diff ---" line
    patched = subprocess.run(["patch", "-p1", "--forward", "--silent", "--no-backup-if-mismatch", "-r", "-"],
                             input=diff, text=True, cwd=replay, capture_output=True)  # fmt: skip
    if patched.returncode:
        verdict = "GONE"
    else:
        tests = subprocess.run(config["test-command"].split(), cwd=replay, env=env, capture_output=True)
        verdict = "KILLED" if tests.returncode else "SURVIVED"
    counts[verdict] += 1
    [spec] = item.mutations
    mutated = next(line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
    print(f"{verdict:8} {spec.operator_name} line {spec.start_pos[0]}: {mutated[1:].strip()[:100]}", flush=True)
shutil.copy2(root / module, replay / module)
print(f"{module}: {len(survivors)} survivors replayed: " + ", ".join(f"{n} {k.lower()}" for k, n in counts.items()))
