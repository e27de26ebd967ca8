"""One summary row of a cosmic-ray session: module, mutants, killed, survived, incompetent or timed out (used by
scripts/mutation.sh)."""

import sys
from collections import Counter

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome

module, session = sys.argv[1:3]
with use_db(session, WorkDB.Mode.open) as db:
    outcomes = Counter(result.test_outcome for _, result in db.completed_work_items)
    total = db.num_work_items
killed, survived = outcomes[TestOutcome.KILLED], outcomes[TestOutcome.SURVIVED]
print(f"| {module} | {total} | {killed} | {survived} | {total - killed - survived} |")
