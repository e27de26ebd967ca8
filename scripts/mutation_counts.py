"""One summary row of a cosmic-ray session: module, mutants, killed, survived, skipped (inside annotations),
incompetent or timed out (used by scripts/mutation.sh)."""

import sys
from collections import Counter

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome

module, session = sys.argv[1:3]
with use_db(session, WorkDB.Mode.open) as db:
    results = [result for _, result in db.completed_work_items]
    total = db.num_work_items
outcomes = Counter(result.test_outcome for result in results)
skipped = sum(result.worker_outcome == WorkerOutcome.SKIPPED for result in results)
killed, survived = outcomes[TestOutcome.KILLED], outcomes[TestOutcome.SURVIVED]
print(f"| {module} | {total} | {killed} | {survived} | {skipped} | {total - killed - survived - skipped} |")
