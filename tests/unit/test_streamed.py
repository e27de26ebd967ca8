"""Safetensors files written and read one tensor at a time are the files the safetensors library writes and reads."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from ocrheads.models.convert.streamed import Planned, read_header, read_tensor, write_streamed

TENSORS = {
    "a.weight": torch.randn(3, 5).to(torch.bfloat16),
    "b.mask": torch.rand(7) > 0.5,
    "c.ids": torch.arange(12, dtype=torch.int64).reshape(2, 2, 3),
    "d.scale": torch.tensor(2.5),
    "e.half": torch.randn(1, 9).half(),
}


def test_streamed_files_load_with_safetensors(tmp_path):
    planned = [Planned(name, t.dtype, tuple(t.shape), lambda t=t: t) for name, t in TENSORS.items()]
    written = write_streamed(tmp_path / "x.safetensors", planned, {"format": "pt"})
    assert written == sum(t.nbytes for t in TENSORS.values())
    loaded = load_file(tmp_path / "x.safetensors")
    assert loaded.keys() == TENSORS.keys()
    for name, tensor in TENSORS.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def test_library_files_read_one_tensor_at_a_time(tmp_path):
    save_file(TENSORS, tmp_path / "y.safetensors", metadata={"format": "pt"})
    entries, metadata = read_header(tmp_path / "y.safetensors")
    assert metadata == {"format": "pt"} and {e.name for e in entries} == TENSORS.keys()
    with (tmp_path / "y.safetensors").open("rb") as handle:
        for entry in entries:
            assert torch.equal(read_tensor(handle, entry), TENSORS[entry.name]), entry.name


def test_a_made_tensor_unlike_its_plan_is_an_error(tmp_path):
    planned = [Planned("a", torch.float32, (2, 2), lambda: torch.zeros(4))]
    with pytest.raises(ValueError, match=r"a: made torch.float32 \(4,\)"):
        write_streamed(tmp_path / "z.safetensors", planned)
