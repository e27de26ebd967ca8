"""Capturing rows never makes the host wait for a GPU inside the registered attention function, nor where decoding
steps' deferred rows are computed: each wait costs a full stop of the GPU's queue in every layer of every forward
call. Counted on the CPU under virtual devices (each op that would read a GPU tensor's values or copy between host and
GPU), and on a GPU with CUDA's own sync check."""

from contextlib import contextmanager

import pytest
import torch
from transformers import AttentionInterface

from ocrheads.attention import function, install
from ocrheads.scoring.kinds import OCR, RETRIEVAL
from ocrheads.scoring.ocr import score_ocr_batch
from ocrheads.scoring.options import scoring_options
from ocrheads.scoring.retrieval import score_retrieval_batch
from ocrheads.testing.virtual_devices import LAYOUTS, virtual_gpus

from .tiny_inputs import mixed_passkeys, on_the_cpu, tiny_adapter

# The counts run on the CPU only (`on_the_cpu`): on a GPU the CUDA sync check at the end is the test.


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return mixed_passkeys(tmp_path_factory.mktemp("syncs"))


@contextmanager
def inside_the_attention_function(begin, end):
    """Call `begin()` on entering ocrheads' attention function (or the computation of deferred rows) and `end()` on
    leaving it, in every layer."""

    def around(run):
        def wrapped(*args, **kwargs):
            begin()
            try:
                return run(*args, **kwargs)
            finally:
                end()

        return wrapped

    finish = function.DeferredRows.finish
    AttentionInterface.register(function.ATTENTION_NAME, around(function.ocrheads_attention))
    function.DeferredRows.finish = around(finish)
    try:
        yield
    finally:
        AttentionInterface.register(function.ATTENTION_NAME, function.ocrheads_attention)
        function.DeferredRows.finish = finish


def _captures(adapter, images, pages, texts):
    """OCR scores from generated and from gold answers (prefill and decoding steps), and retrieval scores with the
    paper code's extra prompt rows."""
    for answers in ("generated", "gold"):
        score_ocr_batch(adapter, images, pages, scoring_options(answers=answers), OCR.table_for(adapter))
    score_retrieval_batch(adapter, texts, scoring_options("paper-code", answers="gold"), RETRIEVAL.table_for(adapter))


@contextmanager
def counting_inside_the_attention_function(layout, model):
    with virtual_gpus(layout, model) as mode:
        switch = [lambda: setattr(mode, "counting", True), lambda: setattr(mode, "counting", False)]
        with inside_the_attention_function(*switch):
            yield mode.syncs


def _counted_syncs(adapter, data, layout):
    with counting_inside_the_attention_function(layout, adapter.model) as syncs:
        _captures(adapter, *data)
    return syncs


@on_the_cpu
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("family", ["qwen2_vl", "gemma3"])
def test_capturing_rows_never_waits_for_the_gpu(family, layout, data):
    adapter = tiny_adapter(family)
    install(adapter.model)
    assert _counted_syncs(adapter, data, layout) == []


@on_the_cpu
def test_the_count_sees_a_wait_planted_in_the_capture_path(data, monkeypatch):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    original = function._capture

    def planted(*args):
        captured = original(*args)
        captured.argmax.max().item()  # a read of the GPU's result: the host waits
        return captured

    monkeypatch.setattr(function, "_capture", planted)
    syncs = _counted_syncs(adapter, data, "single")
    assert syncs and set(syncs) == {"TensorBase.item"}


@on_the_cpu
def test_the_count_sees_a_wait_planted_where_decoding_rows_are_joined(data, monkeypatch):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    original = function._joined_rows

    def planted(steps, call, capture):
        joined = original(steps, call, capture)
        joined.positions.tolist()  # only decoding steps' rows are joined, after generate returns
        return joined

    monkeypatch.setattr(function, "_joined_rows", planted)
    syncs = _counted_syncs(adapter, data, "single")
    assert syncs and set(syncs) == {"TensorBase.tolist"}


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA's sync check needs a GPU (scripts/gpu_check.sh runs it)"
)
def test_capturing_rows_passes_cuda_s_sync_check_on_a_gpu(data):
    adapter = tiny_adapter("qwen2_vl")
    adapter.model.to("cuda")
    install(adapter.model)
    with inside_the_attention_function(lambda: torch.cuda.set_sync_debug_mode("error"),
                                       lambda: torch.cuda.set_sync_debug_mode(0)):  # fmt: skip
        _captures(adapter, *data)
