"""Float32 computed as float32 while ocrheads runs.

torch lets float32 matmuls and convolutions run in reduced precision: cuDNN convolutions (the vision towers' patch
embeddings) use TF32 by default, and a library a user imports may turn on TF32 matmuls or oneDNN's bf16 ones on a
CPU. Scores and edits of a float32 run must not depend on what else the process imported, so every run turns all
of them off while it computes and restores them after. torch's `fp32_precision` switches (torch 2.9 and later) are
the only ones touched: mixing them with the legacy `allow_tf32` flags makes torch refuse to read either.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

# each (backend, operation) whose float32 precision torch can lower; "none" inherits from the backend, then globally
SWITCHES = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"), ("mkldnn", "matmul"), ("mkldnn", "conv"),
            ("mkldnn", "rnn"))  # fmt: skip


def _switch(backend: str, operation: str):
    return getattr(getattr(torch.backends, backend), operation)


def reduced_float32() -> dict[str, str]:
    """The operations that would run float32 in reduced precision now, with the precision each would use."""
    found = {}
    for backend, operation in SWITCHES:
        chain = (_switch(backend, operation), getattr(torch.backends, backend), torch.backends)
        value = next((item.fp32_precision for item in chain if getattr(item, "fp32_precision", "none") != "none"), "")
        if value not in ("", "ieee"):
            found[f"{backend}.{operation}"] = value
    return found


def precision_setting() -> str:
    """How float32 is computed now, as a run's config records it: "ieee", or each reduced operation."""
    reduced = reduced_float32()
    return ", ".join(f"{name} {value}" for name, value in reduced.items()) if reduced else "ieee"


@contextmanager
def exact_float32() -> Iterator[None]:
    """Every float32 matmul and convolution in IEEE float32 inside the block (also as a decorator); each switch is
    set back to what it was after."""
    switches = [_switch(backend, operation) for backend, operation in SWITCHES]
    saved = [switch.fp32_precision for switch in switches]
    for switch in switches:
        switch.fp32_precision = "ieee"
    try:
        yield
    finally:
        for switch, value in zip(switches, saved, strict=True):
            switch.fp32_precision = value
