"""The resumable, sharded loop over a run's parts, shared by scoring and evaluation.

Each part is written whole by its work (a part file exists only once complete), so an interrupted run resumes
where it stopped and never duplicates work; under torchrun each rank does the parts it owns, and the leader merges
once every rank is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rich.progress import Progress

from ocrheads.distributed import Shard


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
        for index, (path, work) in enumerate(parts):
            if shard.owns(index) and not path.is_file():
                work()
            bar.advance(task)
    shard.merge(finish)
