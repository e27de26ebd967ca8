"""Runs sharded over processes started by `torchrun` or `accelerate launch` (torch.distributed; gloo on CPU).

Work is split by part: part i belongs to rank i mod world size. Every part file is named by its index, so the
ranks write disjoint files into one run directory, and the leader's merge reads exactly the parts a single
process would have written: the merged results are the single-process results, byte for byte.

torch.distributed is imported only where there are several ranks: a single process that only reads runs (select,
analyze, report) starts without torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Shard:
    rank: int
    world: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def owns(self, part: int) -> bool:
        return part % self.world == self.rank

    def merge(self, merge_parts: Callable[[], object]) -> None:
        """Once every rank has written its parts, the leader merges them; every rank returns after the merge."""
        self.barrier()
        if self.leader:
            merge_parts()
        self.barrier()

    def barrier(self) -> None:
        """Wait until every rank gets here (a no-op in a single process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def current_shard() -> Shard:
    """This process's shard: rank and world size from the launcher's environment, (0, 1) without one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Shard(0, 1)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Shard(dist.get_rank(), dist.get_world_size())
