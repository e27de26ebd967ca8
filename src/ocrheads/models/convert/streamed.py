"""Read and write safetensors files one tensor at a time, so a conversion holds one tensor in memory, not a shard.

The safetensors library writes a file only from a complete dict of tensors, and its reader maps whole shards
into the process; the format itself (an 8-byte little-endian header length, a JSON header of dtype, shape and
byte offsets, then the raw bytes) allows both to stream. Files written here load with `safetensors.safe_open`.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip
NAMES = {dtype: name for name, dtype in DTYPES.items()}


@dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors file: where its bytes are."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: Path) -> tuple[list[Entry], dict[str, str]]:
    """The tensors of a safetensors file, in file order, and its metadata."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + length
    entries = [
        Entry(name, info["dtype"], tuple(info["shape"]), base + info["data_offsets"][0], base + info["data_offsets"][1])
        for name, info in header.items()
    ]
    return sorted(entries, key=lambda entry: entry.start), metadata


def read_tensor(handle, entry: Entry) -> torch.Tensor:
    """One tensor's bytes, read from an open file into a tensor of its own."""
    tensor = torch.empty(entry.shape, dtype=DTYPES[entry.dtype])
    handle.seek(entry.start)
    if handle.readinto(tensor.reshape(-1).view(torch.uint8).numpy()) != entry.nbytes:
        raise ValueError(f"{entry.name}: the file ends inside the tensor's bytes")
    return tensor


@dataclass(frozen=True)
class Planned:
    """A tensor to write: its name, dtype and shape are known before its data is made."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    make: Callable[[], torch.Tensor]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * torch.empty((), dtype=self.dtype).element_size()


def write_streamed(path: Path, tensors: Iterable[Planned], metadata: dict[str, str] | None = None) -> int:
    """Write `tensors` to a safetensors file, making each one only when its turn comes; returns the bytes
    of tensor data written. A made tensor of the wrong dtype or shape is an error, not a corrupt file."""
    tensors = list(tensors)
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for tensor in tensors:
        header[tensor.name] = {
            "dtype": NAMES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + tensor.nbytes]
        }  # fmt: skip
        offset += tensor.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for planned in tensors:
            made = planned.make()
            if made.dtype != planned.dtype or tuple(made.shape) != planned.shape:
                raise ValueError(
                    f"{planned.name}: made {made.dtype} {tuple(made.shape)}, planned {planned.dtype} {planned.shape}"
                )
            handle.write(made.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return offset
