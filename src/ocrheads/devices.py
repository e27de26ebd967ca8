"""Where the model runs, and the device rule every piece of ocrheads follows.

The rule (a GPU refuses what a CPU allows: an op on tensors of two devices, `.numpy()` of a GPU tensor):
- Model-device tensors are the batch after `adapter.encode`, what forward and generate calls return, and what a
  session holds while it runs (captured rows, kept head outputs, output sums). Only forward calls, the attention
  function and the session compute with them. A model may be split over GPUs (`--device-map auto`), so each layer's
  tensors are on that layer's GPU: the attention function moves what it is given to the device of the layer's own
  tensors, never to "the" device.
- Everything else (image geometry, evidence, alignment, tables, metrics, sinks and means handed back, verify's
  comparisons, test references) works on CPU copies it asks for explicitly with `to_cpu`, once per batch, and
  builds its requests on the CPU. `attention_session` moves requests once to the model's input device, and
  `append_tokens`-like helpers move what they add to the batch's device with `to_device`.
- Results leave a session through `to_cpu` (captured rows, means, sink masks), so nothing downstream sees a GPU.

The suite checks this without a GPU: ocrheads.testing.virtual_devices runs the GPU-facing paths on the CPU with
every tensor labelled with the device it would have, and raises where CUDA would.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from transformers import BatchEncoding

from ocrheads.device_names import DEVICES, DTYPE_NAMES
from ocrheads.errors import OcrHeadsError

DTYPES = {name: name if name == "auto" else getattr(torch, name) for name in DTYPE_NAMES}


def resolve_device(spec: str) -> str:
    """`auto`: the GPU when there is one; `cuda` under torchrun: this rank's GPU (cuda:LOCAL_RANK)."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return spec
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise OcrHeadsError(f"--device {spec}: no CUDA GPU is visible to torch here; use --device cpu")
        if spec == "cuda":
            spec = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        index = spec.removeprefix("cuda:")
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise OcrHeadsError(f"--device {spec}: there are {torch.cuda.device_count()} GPUs (cuda:0 ...)")
        return spec
    raise OcrHeadsError(f"unknown --device {spec!r}; use {DEVICES}")


def resolve_dtype(spec: str | torch.dtype) -> str | torch.dtype:
    """`auto` (the checkpoint's own dtype) or a torch floating dtype, from its name."""
    if isinstance(spec, torch.dtype):
        return spec
    if spec not in DTYPES:
        raise OcrHeadsError(f"unknown --dtype {spec!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[spec]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device inputs go to: the input embeddings' (the first GPU of a device map)."""
    return model.get_input_embeddings().weight.device


def exact_dtype(device: torch.device) -> torch.dtype:
    """What captured rows are computed in: float64 (the few rows captured cost little even on GPUs with slow
    float64), except where the device has none (Apple's MPS), then float32."""
    return torch.float32 if device.type == "mps" else torch.float64


def to_device(value: Any, device: torch.device | str) -> Any:
    """The same structure with every tensor on `device` (no copy where it is already there)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, BatchEncoding):
        return BatchEncoding({key: to_device(item, device) for key, item in value.items()})
    if isinstance(value, Mapping):
        return type(value)({key: to_device(item, device) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return type(value)(to_device(item, device) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = {field.name: to_device(getattr(value, field.name), device) for field in dataclasses.fields(value)}
        return dataclasses.replace(value, **moved)
    return value


def to_cpu(value: Any) -> Any:
    return to_device(value, "cpu")


@contextmanager
def out_of_memory_named(what: str, lower: str) -> Iterator[None]:
    """Running out of GPU memory inside the block is one line that names `what` ran out and what to `lower`; it is
    never reported as anything else, nor as a traceback."""
    try:
        yield
    except torch.OutOfMemoryError as err:
        reason = str(err).splitlines()[0] if str(err) else "out of memory"
        raise OcrHeadsError(f"out of GPU memory on {what} ({reason}); lower {lower}") from None
