"""The virtual-device mode raises where CUDA would, and only there: the rules the GPU-path tests rely on."""

import numpy as np
import pytest
import torch

from ocrheads.testing.virtual_devices import HOST, VirtualDeviceError, VirtualDeviceMode, device_of


def _on(device: str, tensor: torch.Tensor) -> torch.Tensor:
    with VirtualDeviceMode():
        return tensor.to(device)


def test_two_gpus_or_a_gpu_and_a_host_array_in_one_op_raise():
    a, b = _on("cuda:0", torch.ones(3)), _on("cuda:1", torch.ones(3))
    with VirtualDeviceMode():
        with pytest.raises(VirtualDeviceError, match="cuda:0 and cuda:1"):
            a + b
        with pytest.raises(VirtualDeviceError, match=r"cuda:0 tensor with host tensor\(s\) of shape \[\(3,\)\]"):
            torch.cat([a, torch.zeros(3)])
        with pytest.raises(VirtualDeviceError, match=r"numpy of a cuda:0 tensor"):
            a.numpy()
        with pytest.raises(VirtualDeviceError, match=r"__array__ of a cuda:0 tensor"):
            np.asarray(a)
        with pytest.raises(VirtualDeviceError, match="cuda:0 indices into a cpu tensor"):
            torch.arange(5)[torch.tensor([1, 2], device=a.device)]


def test_what_cuda_allows_passes_and_keeps_values():
    a = _on("cuda:0", torch.arange(6.0))
    with VirtualDeviceMode():
        assert device_of(a * torch.tensor(2.0)) == "cuda:0"  # a 0-dim host tensor is a scalar
        picked = a[torch.tensor([1, 4])]  # host indices into a GPU tensor
        assert device_of(picked) == "cuda:0" and picked.tolist() == [1.0, 4.0]
        assert device_of(torch.zeros(2)) == HOST and device_of(torch.zeros(2, device=a.device)) == "cuda:0"
        assert device_of(torch.zeros_like(a)) == "cuda:0" and device_of(a.new_ones(2)) == "cuda:0"
        assert a.device == torch.device("cuda:0") and a.is_cuda and a.get_device() == 0
        back = a.cpu()
        assert device_of(back) == HOST and device_of(a) == "cuda:0" and back.numpy().tolist() == list(range(6))
        assert device_of(a.to(torch.float64)) == "cuda:0" and device_of(a.to("cuda:1")) == "cuda:1"
        a[torch.tensor([0])] = torch.tensor([7.0])  # host values written into a GPU tensor
        assert a[0].item() == 7.0


def test_gradients_are_on_their_inputs_devices():
    x = _on("cuda:1", torch.ones(3)).requires_grad_()
    with VirtualDeviceMode():
        (grad,) = torch.autograd.grad((x * 2).sum(), [x])
        assert device_of(grad) == "cuda:1" and grad.tolist() == [2.0, 2.0, 2.0]


def test_the_old_runs_of_is_caught():
    """ocrheads' first GPU crash (runs_of concatenated host zeros with the GPU's input_ids), planted again."""

    def old_runs_of(ids, token_id):
        hits = (ids == token_id).int()
        return torch.diff(torch.cat([torch.zeros(1, dtype=torch.int), hits, torch.zeros(1, dtype=torch.int)]))

    ids = _on("cuda:0", torch.tensor([5, 9, 9, 5]))
    with VirtualDeviceMode(), pytest.raises(VirtualDeviceError, match="cat: a cuda:0 tensor with host"):
        old_runs_of(ids, 9)
