"""Patch embeddings computed as matmuls while the tower trace runs (ocrheads.probe.patch_matmul) give what the
convolution gives, and only convolutions whose kernel tiles their input are replaced."""

import pytest
import torch

from ocrheads.probe import patch_matmul
from ocrheads.probe.patch_matmul import PatchesAsMatmul

TILING = [
    (torch.nn.Conv3d(3, 8, (2, 14, 14), (2, 14, 14)), (5, 3, 2, 14, 14)),  # Qwen2-VL's, one patch an input
    (torch.nn.Conv3d(3, 8, (2, 4, 4), (2, 4, 4), bias=False), (2, 3, 4, 9, 13)),  # a remainder past the last patch
    (torch.nn.Conv2d(3, 8, 4, 4), (2, 3, 18, 13)),
    (torch.nn.Conv2d(3, 8, (4, 2), (4, 2), padding="valid"), (1, 3, 16, 10)),
]
OVERLAPPING = [
    (torch.nn.Conv2d(3, 8, 3, 1, padding=1), (1, 3, 8, 8)),  # GOT-OCR2's neck: each output reads its neighbours
    (torch.nn.Conv2d(3, 8, 3, 2, padding=1), (1, 3, 8, 8)),
    (torch.nn.Conv2d(4, 8, 2, 2, groups=2), (1, 4, 8, 8)),
]


def _counted(monkeypatch) -> list:
    calls = []
    original = patch_matmul.tiled_convolution
    monkeypatch.setattr(patch_matmul, "tiled_convolution", lambda *a: calls.append(1) or original(*a))
    return calls


@pytest.mark.parametrize(("conv", "shape"), TILING)
def test_a_tiling_convolution_is_computed_as_a_matmul_with_the_same_values_and_gradients(conv, shape, monkeypatch):
    torch.manual_seed(0)
    conv, calls = conv.double(), _counted(monkeypatch)
    pixels = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    want = conv(pixels)
    (want_grad,) = torch.autograd.grad((want * want.detach()).sum(), pixels)
    with PatchesAsMatmul():
        got = conv(pixels)
    (got_grad,) = torch.autograd.grad((got * want.detach()).sum(), pixels)
    assert calls and got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-12) and torch.allclose(got_grad, want_grad, atol=1e-12)


@pytest.mark.parametrize(("conv", "shape"), OVERLAPPING)
def test_other_convolutions_are_left_alone(conv, shape, monkeypatch):
    calls = _counted(monkeypatch)
    with PatchesAsMatmul():
        conv(torch.randn(shape))
    assert not calls
