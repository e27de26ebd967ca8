"""Patch embeddings as the matrix products they are, while the tower trace runs: a convolution whose kernel tiles
its input (stride equal to the kernel, no padding, dilation or groups: ViT and Qwen patch embeddings) maps each
patch to one output place, which a reshape and a matmul compute too. Its gradient with respect to the pixels,
which the trace takes once per group of rows, is many times cheaper so: on the CPU, a Conv3d's input gradient took
85% of a mid-sized Qwen2-VL tower's backward pass (BENCHMARKS.md, "The geometry probe"). Which elements feed which
output is the same either way, and that is all the trace reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

CONVOLUTIONS = {F.conv2d: 2, F.conv3d: 3}


def _options(args: tuple, kwargs: dict) -> tuple:
    names = ("bias", "stride", "padding", "dilation", "groups")
    defaults = (None, 1, 0, 1, 1)
    return tuple(args[2 + i] if len(args) > 2 + i else kwargs.get(name, default)
                 for i, (name, default) in enumerate(zip(names, defaults, strict=True)))  # fmt: skip


def _all(value, dims: int, wanted: int) -> bool:
    return all(v == wanted for v in ((value,) * dims if isinstance(value, int) else value))


def tiling(func, args: tuple, kwargs: dict) -> bool:
    """Whether this convolution call's kernel tiles its (batched) input."""
    dims = CONVOLUTIONS.get(func)
    if dims is None or args[0].ndim != dims + 2:
        return False
    _, stride, padding, dilation, groups = _options(args, kwargs)
    kernel = tuple(args[1].shape[2:])
    strides = (stride,) * dims if isinstance(stride, int) else tuple(stride)
    unpadded = padding == "valid" or (not isinstance(padding, str) and _all(padding, dims, 0))
    return strides == kernel and unpadded and _all(dilation, dims, 1) and groups == 1


def tiled_convolution(args: tuple, kwargs: dict) -> torch.Tensor:
    """The convolution as a matmul over its input's patches (what is left past the last whole patch is dropped, as
    the convolution drops it)."""
    pixels, weight = args[0], args[1]
    bias = _options(args, kwargs)[0]
    kernel, dims = weight.shape[2:], weight.ndim - 2
    counts = [size // side for size, side in zip(pixels.shape[2:], kernel, strict=True)]
    pixels = pixels[(slice(None), slice(None), *(slice(0, n * side) for n, side in zip(counts, kernel, strict=True)))]
    split = pixels.reshape(
        pixels.shape[0], pixels.shape[1], *(v for n, side in zip(counts, kernel, strict=True) for v in (n, side))
    )
    order = [0, *(2 + 2 * d for d in range(dims)), 1, *(3 + 2 * d for d in range(dims))]
    patches = split.permute(order).reshape(-1, weight[0].numel())
    out = patches @ weight.reshape(weight.shape[0], -1).T
    if bias is not None:
        out = out + bias
    return out.reshape(pixels.shape[0], *counts, weight.shape[0]).permute(0, dims + 1, *range(1, dims + 1))


class PatchesAsMatmul(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if tiling(func, args, kwargs):
            return tiled_convolution(args, kwargs)
        return func(*args, **kwargs)
