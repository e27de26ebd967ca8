"""A tiny Qwen2-VL that reads its input exactly as Qwen2-VL-Instruct does, on the test device."""

from ocrheads.testing.qwen2_vl_shapes import PAPER_PIXELS, qwen2_vl_shaped, qwen2_vl_tokenizer

from .tiny_inputs import on_test_device

__all__ = ["PAPER_PIXELS", "qwen2_vl_paper_model", "qwen2_vl_tokenizer"]


def qwen2_vl_paper_model():
    """A two-layer Qwen2-VL (random weights) with the real tokenizer, chat template and paper pixel bounds."""
    model, processor = qwen2_vl_shaped("tiny")
    return on_test_device(model), processor
