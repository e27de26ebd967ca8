"""Holding a run folder: one process at a time, and a config that pins it, so a resumed run is the same run."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import yaml

from ocrheads.atomic import atomic_write_text
from ocrheads.distributed import Shard
from ocrheads.errors import OcrHeadsError
from ocrheads.run.layout import CONFIG, read_config

_HELD: dict[Path, int] = {}  # run directories this process holds, and their lock file descriptors


def lock(folder: Path) -> None:
    """Hold `folder` for this process until it exits (the kernel lets go even after SIGKILL); refuse it while
    another process holds it, so two runs never interleave their parts."""
    folder = folder.resolve()
    if folder in _HELD:
        return
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(descriptor, 32).decode(errors="replace").strip() or "?"
        os.close(descriptor)
        raise OcrHeadsError(
            f"{folder} is in use by another run (process {holder}); wait for it to finish or use another --out"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, str(os.getpid()).encode())
    _HELD[folder] = descriptor


def claim(folder: Path, config: dict, shard: Shard | None = None) -> None:
    """Lock a run directory, then start it, or continue one whose config matches; refuse a different config.

    In a sharded run the leader locks and writes the config; the other ranks wait for it, then check theirs (if
    the leader is refused, it exits and the launcher stops the others)."""
    shard = shard or Shard(0, 1)
    if shard.leader:
        lock(folder)
        _pin(folder, config)
    shard.barrier()
    if not shard.leader:
        _pin(folder, config)


def preflight(folder: Path, known: dict, shard: Shard | None = None) -> None:
    """Before the model is loaded: hold the run directory, and refuse it if the part of its config that is
    already known (`known`: settings, and settings nested one level down) differs from the earlier run's."""
    shard = shard or Shard(0, 1)
    if shard.leader:
        lock(folder)
    if (folder / CONFIG).is_file():
        before = read_config(folder)
        restricted = {
            key: {k: before[key].get(k) for k in value}
            if isinstance(value, dict) and isinstance(before.get(key), dict)
            else before.get(key)
            for key, value in known.items()
        }
        _refuse_changes(folder, restricted, known)


def _pin(folder: Path, config: dict) -> None:
    if (folder / CONFIG).is_file():
        _refuse_changes(folder, read_config(folder), config)
        return
    atomic_write_text(folder / CONFIG, yaml.safe_dump(config, sort_keys=False))


UNPINNED = ("versions", "hardware", "trained_by")  # recorded, but a resume may change them (an upgrade, a GPU)
MAX_LISTED = 5
NOT_SET = "(not set)"
UNRECORDED = (
    f"; if a setting shown as {NOT_SET} before is not one you added, the ocrheads that started the run did not record "
    "it yet, and the run cannot be resumed"
)


def _refuse_changes(folder: Path, before: dict, now: dict) -> None:
    pinned = (key for key in now if key not in UNPINNED)
    changed = [line for key in pinned for line in differences(key, before.get(key), now[key])]
    if changed:
        listed = "; ".join(changed[:MAX_LISTED]) + ("; ..." if len(changed) > MAX_LISTED else "")
        added = any(f": {NOT_SET} -> " in line for line in changed)
        raise OcrHeadsError(
            f"{folder} was run with other settings ({listed}); rerun with the earlier settings to resume, or use "
            f"another --out to keep both{UNRECORDED if added else ''}"
        )


def differences(name: str, before, now) -> list[str]:
    """One 'setting: earlier -> now' line for each leaf that differs, nested settings named with dots."""
    if isinstance(before, dict) and isinstance(now, dict):
        keys = dict.fromkeys([*before, *now])
        return [line for key in keys for line in differences(f"{name}.{key}", before.get(key), now.get(key))]
    if before == now:
        return []
    return [f"{name}: {_shown(before)} -> {_shown(now)}"]


def _shown(value) -> str:
    return NOT_SET if value is None else repr(value)
