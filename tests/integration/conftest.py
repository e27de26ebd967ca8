"""A tiny random Qwen2-VL saved as a checkpoint folder, for tests that go through the CLI."""

import pytest

from .tiny_inputs import tiny_adapter


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    adapter = tiny_adapter("qwen2_vl")
    adapter.model.save_pretrained(folder)
    adapter.processor.save_pretrained(folder)
    return folder
