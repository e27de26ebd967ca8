"""Write files and folders so that a reader sees either nothing or the complete result, never a part."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ocrheads.errors import OcrHeadsError

T = TypeVar("T")


def _umask() -> int:
    """The process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _beside(path: Path, make: Callable[[Path], T]) -> T:
    """Create a temporary beside `path`; an unwritable place fails here, before anything is written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return make(path.parent)
    except OSError as err:
        raise OcrHeadsError(f"cannot write to {path.parent} ({err.strerror}); choose a writable --out") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    descriptor, temporary = _beside(path, lambda parent: tempfile.mkstemp(prefix=f".{path.name}.", dir=parent))
    try:
        os.fchmod(descriptor, 0o666 & ~_umask())  # mkstemp makes files private; results are meant to be shared
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path`, on any error it is removed.

    An existing `path` is kept unless `overwrite` is set, and even then it is only removed once the new
    folder is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OcrHeadsError(f"{path} already exists; pass --overwrite to replace it, or choose another --out")
    staging = Path(_beside(path, lambda parent: tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=parent)))
    staging.chmod(0o777 & ~_umask())
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, retired / path.name)
        os.replace(staging, path)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, path)
