"""A CPU check for device bugs: every tensor stays on the CPU but carries the device it would have on GPUs, and an
op that CUDA would refuse raises here.

CI and most development machines have no GPU, so code that mixes a GPU tensor with a CPU one (what crashed the
first GPU run) passes every CPU test. Inside `virtual_gpus(model, layout)`:
- the model's weights carry the device a placement gives them: all on cuda:0 (`single`, as `--device cuda`), or
  the text decoder's second half, its final norm and the output layer on cuda:1 (`split`, as `--device-map auto`
  over two GPUs), where modules' inputs move to their weights' device and the model's outputs return to its
  input's device, as accelerate's hooks do;
- `tensor.device` reports the virtual device, so code that follows it (`.to(x.device)`, `device=x.device`) works;
- factories without `device=`, `.cpu()` and everything the processor builds are host tensors; `.to()` and
  `.cuda()` move a tensor (a copy with the new device);
- an op raises VirtualDeviceError where CUDA would: tensors of two GPUs in one op, a GPU tensor with a host tensor
  of more than zero dimensions, `.numpy()` of a GPU tensor, GPU indices into a host tensor.

Host indices into a GPU tensor and host values written into one are allowed, as on CUDA.

While `mode.counting` is set, every op that would make the host wait for a GPU (reading a GPU tensor's values:
`.item()`, `.tolist()`, `bool()`, `nonzero`; copies between host and GPU) is listed in `mode.syncs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Literal
from unittest import mock

import torch
from torch.overrides import TorchFunctionMode

HOST = "cpu"
_LABEL = "_ocrheads_virtual_device"
_SKIPPED_KEYS = ("past_key_values", "cache")  # as accelerate's hooks: a cache stays where each layer put it
Layout = Literal["single", "split"]
LAYOUTS: tuple[Layout, ...] = ("single", "split")


class VirtualDeviceError(BaseException):
    """What CUDA would have raised. A BaseException, so that no `except Exception` in the code under test hides it
    behind a message of its own."""


def device_of(tensor: torch.Tensor) -> str:
    return getattr(tensor, _LABEL, HOST)


def _set(tensor: torch.Tensor, device: str) -> torch.Tensor:
    setattr(tensor, _LABEL, device)
    return tensor


def _name(spec: Any) -> str:
    """cpu, or cuda:N, from anything torch takes as a device."""
    device = torch.device(spec if not isinstance(spec, int) else f"cuda:{spec}")
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return device.type


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _label(value: Any, device: str) -> Any:
    for tensor in _tensors(value):
        _set(tensor, device)
    return value


def _common_device(what: str, tensors: list[torch.Tensor]) -> str:
    """The one GPU the tensors are on (HOST if none), or VirtualDeviceError as CUDA would raise it."""
    devices = sorted({device_of(t) for t in tensors} - {HOST})
    if len(devices) > 1:
        raise VirtualDeviceError(f"{what}: tensors on {' and '.join(devices)} in one op")
    if devices and any(device_of(t) == HOST and t.dim() > 0 for t in tensors):
        shapes = [tuple(t.shape) for t in tensors if device_of(t) == HOST and t.dim() > 0]
        raise VirtualDeviceError(f"{what}: a {devices[0]} tensor with host tensor(s) of shape {shapes} in one op")
    return devices[0] if devices else HOST


def _what(func: Callable) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))


def _moved(tensor: torch.Tensor, device: str) -> torch.Tensor:
    """The tensor on `device`: itself if it is there, else a copy (gradients flow through it, as through `.to`)."""
    return tensor if device_of(tensor) == device else _set(tensor.clone(), device)


def _to(func, args, kwargs):
    tensor, rest = args[0], args[1:]
    if rest and isinstance(rest[0], torch.Tensor):  # .to(other): other's device and dtype
        return _set(_moved(tensor, device_of(rest[0])).to(rest[0].dtype), device_of(rest[0]))
    copy = kwargs.pop("copy", False)
    device, dtype, _, _ = torch._C._nn._parse_to(*rest, **kwargs)
    if device is not None and device.type == "meta":  # shapes only, on no device to label: torch's own move
        return func(tensor, *rest, copy=copy, **kwargs)
    target = device_of(tensor) if device is None else _name(device)
    converted = tensor if dtype is None else func(tensor, dtype=dtype, copy=copy)
    if converted is not tensor:
        return _set(converted, target)
    return _moved(tensor, target)


def _cuda(func, args, kwargs):
    device = kwargs.get("device", args[1] if len(args) > 1 else None)
    return _moved(args[0], _name(device if device is not None else "cuda"))


def _cpu(func, args, kwargs):
    return _moved(args[0], HOST)


def _to_numpy(func, args, kwargs):
    if device_of(args[0]) != HOST:
        raise VirtualDeviceError(f"{_what(func)} of a {device_of(args[0])} tensor: call .cpu() first")
    return func(*args, **kwargs)


def _indices_allowed(func, tensor: torch.Tensor, index: Any) -> None:
    for indices in _tensors(index):
        if device_of(indices) not in (HOST, device_of(tensor)):
            raise VirtualDeviceError(
                f"{_what(func)}: {device_of(indices)} indices into a {device_of(tensor)} tensor (CUDA takes indices on "
                "the CPU or on the indexed tensor's device)"
            )


def _getitem(func, args, kwargs):
    _indices_allowed(func, args[0], args[1])
    return _label(func(*args, **kwargs), device_of(args[0]))


def _setitem(func, args, kwargs):
    _indices_allowed(func, args[0], args[1])
    value = args[2]
    if isinstance(value, torch.Tensor) and device_of(value) not in (HOST, device_of(args[0])):
        raise VirtualDeviceError(f"{_what(func)}: a {device_of(value)} value into a {device_of(args[0])} tensor")
    return func(*args, **kwargs)


def _copy(func, args, kwargs):
    return func(*args, **kwargs)  # copies across devices; the destination stays where it is


def _gradients(func, args, kwargs):
    inputs = kwargs.get("inputs", args[1] if len(args) > 1 else None)
    grads = func(*args, **kwargs)
    inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    for grad, tensor in zip(grads, inputs, strict=True):
        if grad is not None:
            _set(grad, device_of(tensor))
    return grads


def _device(func, args, kwargs):
    return torch.device(device_of(args[0]))


def _is_cuda(func, args, kwargs):
    return device_of(args[0]) != HOST


def _get_device(func, args, kwargs):
    device = device_of(args[0])
    return -1 if device == HOST else torch.device(device).index


def _grad(func, args, kwargs):
    grad = func(*args, **kwargs)
    return grad if grad is None else _set(grad, device_of(args[0]))


def _histc(func, args, kwargs):
    """CUDA counts integer inputs (transformers' mixture-of-experts routing does on a GPU); the host refuses them, so
    they are counted in float there and returned in the input's dtype, on its device."""
    values = args[0]
    counts = func(values if values.is_floating_point() else values.float(), *args[1:], **kwargs)
    return _label(counts.to(values.dtype), device_of(values))


_SPECIAL = {
    torch.histc: _histc,
    torch.Tensor.histc: _histc,
    torch.Tensor.to: _to,
    torch.Tensor.cuda: _cuda,
    torch.Tensor.cpu: _cpu,
    torch.Tensor.numpy: _to_numpy,
    torch.Tensor.__array__: _to_numpy,
    torch.Tensor.__getitem__: _getitem,
    torch.Tensor.__setitem__: _setitem,
    torch.Tensor.copy_: _copy,
    torch.autograd.grad: _gradients,
    torch.Tensor.device.__get__: _device,
    torch.Tensor.is_cuda.__get__: _is_cuda,
    torch.Tensor.get_device: _get_device,
    torch.Tensor.grad.__get__: _grad,
}


_READS_VALUES = {  # ops whose result depends on a tensor's values on the host: a GPU must finish first
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__,
    torch.Tensor.__index__, torch.Tensor.nonzero, torch.nonzero, torch.argwhere, torch.Tensor.argwhere,
    torch.masked_select, torch.Tensor.masked_select, torch.unique, torch.Tensor.unique, torch.Tensor.numpy,
    torch.Tensor.__array__,
}  # fmt: skip
_MOVES = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda}


def _waits_for_gpu(func, args, kwargs) -> bool:
    """Whether the op makes the host wait for a GPU: it reads a GPU tensor's values, or copies between host and GPU
    (ocrheads never copies through pinned memory, so every such copy waits)."""
    tensors = list(_tensors((args, kwargs)))
    if func in _READS_VALUES:
        return any(device_of(t) != HOST for t in tensors)
    if func in _MOVES:
        source = device_of(args[0])
        if func is torch.Tensor.cpu:
            return source != HOST
        if func is torch.Tensor.cuda:
            return source == HOST
        rest = args[1:]
        if rest and isinstance(rest[0], torch.Tensor):
            target = device_of(rest[0])
        else:
            device = torch._C._nn._parse_to(*rest, **{k: v for k, v in kwargs.items() if k != "copy"})[0]
            target = source if device is None else _name(device)
        return (source == HOST) != (target == HOST)
    device = kwargs.get("device")
    return device is not None and _name(device) != HOST and func in (torch.tensor, torch.as_tensor)


class VirtualDeviceMode(TorchFunctionMode):
    """Carries virtual devices through every torch call and raises where CUDA would (see the module's docstring)."""

    def __init__(self):
        super().__init__()
        self.counting = False
        self.syncs: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if self.counting and _waits_for_gpu(func, args, kwargs):
            self.syncs.append(_what(func))
        special = _SPECIAL.get(func)
        if special is not None:
            return special(func, args, kwargs)
        target = None
        if kwargs.get("device") is not None:  # factories, new_*, *_like
            target, kwargs["device"] = _name(kwargs["device"]), HOST
        device = _common_device(_what(func), list(_tensors((args, kwargs))))
        return _label(func(*args, **kwargs), target or device)


def _moving_inputs(device: str):
    def hook(module, args, kwargs):
        moved = {k: v if k in _SKIPPED_KEYS else _move_all(v, device) for k, v in kwargs.items()}
        return _move_all(args, device), moved

    return hook


def _move_all(value: Any, device: str) -> Any:
    """`value` on `device`, as accelerate's send_to_device moves it: anything with a `.to` by that (Gemma 4's shared
    keys and values move in place, so later layers read them there), then containers item by item."""
    if isinstance(value, torch.Tensor) or (hasattr(value, "to") and not isinstance(value, torch.nn.Module)):
        return value.to(device)
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        return type(value)(_move_all(item, device) for item in value)
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _SKIPPED_KEYS:
                value[key] = _move_all(item, device)
        return value
    return value


def _placement(model: torch.nn.Module, layout: Layout) -> dict[torch.nn.Module, str]:
    """The modules a two-GPU device map lists, each with its GPU: the text decoder's layers (found by their
    attention's layer_idx, which only text attention has), the second half on cuda:1; the input embeddings on cuda:0;
    the decoder's final norm on cuda:1, and the output layer too unless it is tied to the input embeddings (accelerate
    keeps tied weights on one GPU). Everything else stays on cuda:0, unhooked."""
    if layout == "single":
        return {}
    layers = model.config.get_text_config().num_hidden_layers
    placement = {}
    for module in model.modules():
        index = getattr(getattr(module, "self_attn", None), "layer_idx", None)
        if index is not None:
            placement[module] = "cuda:1" if index >= layers // 2 else "cuda:0"
    inputs, output = model.get_input_embeddings(), model.get_output_embeddings()
    placement[inputs] = "cuda:0"
    if norm := getattr(model.get_decoder(), "norm", None):
        placement[norm] = "cuda:1"
    if output is not None:
        placement[output] = "cuda:0" if output.weight is inputs.weight else "cuda:1"
    return placement


def place(model: torch.nn.Module, layout: Layout) -> list:
    """Put `model`'s weights on virtual GPUs as `layout` says, with accelerate-like hooks where it is split; returns
    the hooks' handles. Outside the mode the labels change nothing."""
    placement = _placement(model, layout)
    for tensor in [*model.parameters(), *model.buffers()]:
        _set(tensor, "cuda:0")
    handles = []
    for module, device in placement.items():
        for tensor in [*module.parameters(), *module.buffers()]:
            _set(tensor, device)
        handles.append(module.register_forward_pre_hook(_moving_inputs(device), with_kwargs=True))
    return handles + (_io_same_device(model) if placement else [])


@contextmanager
def placed(model: torch.nn.Module, layout: Layout) -> Iterator[torch.nn.Module]:
    """`model` placed as `layout` says for the block, then back on the host."""
    handles = place(model, layout)
    try:
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for tensor in [*model.parameters(), *model.buffers()]:
            _set(tensor, HOST)


def _io_same_device(model: torch.nn.Module) -> list:
    """The root hook of a dispatched model: inputs to the first GPU, outputs back to where the inputs were."""
    came_from: list[str] = []

    def before(module, args, kwargs):
        first = next(_tensors((args, list(kwargs.values()))), None)
        came_from.append(HOST if first is None else device_of(first))
        return _moving_inputs("cuda:0")(module, args, kwargs)

    def after(module, args, kwargs, output):
        return _move_all(output, came_from.pop())

    return [model.register_forward_pre_hook(before, with_kwargs=True),
            model.register_forward_hook(after, with_kwargs=True)]  # fmt: skip


_VMAP = torch.vmap


def _labelled_vmap(func, *args, **kwargs):
    """torch.vmap, whose outputs come from functorch's C++ and so would carry no device: they get their inputs'
    (transformers builds some attention masks with it)."""
    mapped = _VMAP(func, *args, **kwargs)

    def call(*inputs, **named):
        device = _common_device("vmap", list(_tensors((inputs, named))))
        return _label(mapped(*inputs, **named), device)

    return call


@contextmanager
def virtual_gpus(layout: Layout, model: torch.nn.Module | None = None) -> Iterator[VirtualDeviceMode]:
    """Run the block under the virtual-device mode; `model` (and every model ocrheads loads inside the block) is
    placed as `layout` says."""
    from ocrheads.models import ModelSpec

    load = ModelSpec.load

    def load_placed(spec):
        adapter = load(spec)
        stack.enter_context(placed(adapter.model, layout))
        return adapter

    with ExitStack() as stack:
        if model is not None:
            stack.enter_context(placed(model, layout))
        stack.enter_context(mock.patch.object(ModelSpec, "load", load_placed))
        stack.enter_context(mock.patch("torch.cuda.get_device_name", lambda device=None: "virtual GPU"))
        # kernels chosen by compute capability (mixture-of-experts grouped matmuls): an H100's, as the GPUs lent are
        stack.enter_context(mock.patch("torch.cuda.get_device_capability", lambda device=None: (9, 0)))
        stack.enter_context(mock.patch("torch.vmap", _labelled_vmap))
        yield stack.enter_context(VirtualDeviceMode())
