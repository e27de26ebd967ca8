"""The resumable, sharded loop over a run's parts, shared by scoring and evaluation.

Each part is written whole by its work (a part file exists only once complete), so an interrupted run resumes
where it stopped and never duplicates work; under torchrun each rank does the parts it owns, and the leader merges
once every rank is done.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.progress import Progress

from ocrheads.distributed import Shard

KILL_AFTER_PARTS = "OCRHEADS_TEST_KILL_AFTER_PARTS"  # crash-safety tests: SIGKILL this process after so many parts


def resumable(
    parts: Sequence[tuple[Path, Callable[[], None]]],
    finish: Callable[[], object],
    shard: Shard,
    *,
    description: str,
    progress: bool = True,
) -> None:
    """Run each (part file, work) this rank owns whose file is not there yet, then merge with `finish`."""
    with Progress(disable=not progress or not shard.leader) as bar:
        task = bar.add_task(description, total=len(parts))
        done = 0
        for index, (path, work) in enumerate(parts):
            if shard.owns(index) and not path.is_file():
                _killed_if_asked(done)
                work()
                done += 1
            bar.advance(task)
    _killed_if_asked(done)
    shard.merge(finish)


def _killed_if_asked(done: int) -> None:
    """Where a crash-safety test asks for it (KILL_AFTER_PARTS), die as a kill would, once this process has written
    that many parts: at a point the test chooses, without polling for files."""
    wanted = os.environ.get(KILL_AFTER_PARTS)
    if wanted is not None and done >= int(wanted):
        os.kill(os.getpid(), signal.SIGKILL)
