"""A float32 run computes in float32: every switch that lets torch lower float32 matmuls and convolutions (TF32 on
NVIDIA GPUs, cuDNN's default for convolutions; oneDNN's bf16 on CPUs) is off while score, mask, sink, overlay and
verify compute, set back after, recorded in the run's config and reported by verify. The switches are torch's own
globals, readable on a CPU build, so the state each forward pass runs under is read from a hook on the model."""

import pytest
import torch
import yaml

from ocrheads.data.generate import generate
from ocrheads.data.manifest import open_pages, read_manifest
from ocrheads.eval.conditions import Condition
from ocrheads.eval.datasets import load_eval_set
from ocrheads.eval.runner import Intervention, evaluate
from ocrheads.float32 import exact_float32
from ocrheads.heads import Head
from ocrheads.scoring.options import ScoringOptions
from ocrheads.scoring.overlays import write_overlays
from ocrheads.scoring.runner import score
from ocrheads.verify import verify

from .tiny_inputs import tiny_adapter

SWITCHES = {
    "cuda.matmul": torch.backends.cuda.matmul,
    "cudnn.conv": torch.backends.cudnn.conv,
    "cudnn.rnn": torch.backends.cudnn.rnn,
    "mkldnn.matmul": torch.backends.mkldnn.matmul,
    "mkldnn.conv": torch.backends.mkldnn.conv,
    "mkldnn.rnn": torch.backends.mkldnn.rnn,
}
LOWERED = {"cuda.matmul": "tf32", "cudnn.conv": "tf32", "mkldnn.matmul": "bf16", "mkldnn.conv": "tf32"}


def _state() -> dict[str, str]:
    return {name: switch.fp32_precision for name, switch in SWITCHES.items()}


@pytest.fixture
def lowered():
    """The process as a user's imports may leave it: TF32 matmuls and convolutions, bf16 oneDNN matmuls."""
    before = _state()
    for name, value in LOWERED.items():
        SWITCHES[name].fp32_precision = value
    yield _state()
    for name, value in before.items():
        SWITCHES[name].fp32_precision = value


@pytest.fixture(scope="module")
def adapter_and_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("f32") / "data"
    generate("passkey", data, n=2, lengths=(120,), digits=3, seed=4, progress=False)
    adapter = tiny_adapter("qwen2_vl")
    seen = []
    adapter.model.register_forward_pre_hook(lambda _module, _args: seen.append(_state()))
    return adapter, data, seen


def test_exact_float32_turns_every_switch_to_ieee_and_sets_each_back_even_on_error(lowered):
    with pytest.raises(RuntimeError, match="inside"), exact_float32():
        assert set(_state().values()) == {"ieee"}
        raise RuntimeError("inside")
    assert _state() == lowered


def _forwards(seen: list, run) -> list[dict]:
    seen.clear()
    run()
    assert seen, "the run made no forward pass"
    return seen


def test_score_mask_and_overlay_compute_every_pass_in_ieee_float32_and_record_it(adapter_and_data, lowered, tmp_path):
    adapter, data, seen = adapter_and_data
    runs = {
        "score": lambda: score("ocr", adapter, data, tmp_path, ScoringOptions(answers="gold"), progress=False),
        "mask": lambda: evaluate(
            "mask", adapter, [Condition("baseline", "baseline"), Condition("ocr-top1", "ocr", (Head(0, 1),))],
            [load_eval_set(str(data))], tmp_path, intervention=Intervention(), max_new_tokens=2, progress=False,
        ),
        "sink": lambda: evaluate(
            "sink", adapter, [Condition("ocr-top1", "ocr", (Head(1, 0),))], [load_eval_set(str(data))], tmp_path,
            intervention=Intervention("sink"), max_new_tokens=2, progress=False,
        ),
        "overlay": lambda: write_overlays(adapter, data, read_manifest(data)[:1], [Head(0, 0)], tmp_path / "o"),
    }  # fmt: skip
    for name, run in runs.items():
        states = _forwards(seen, run)
        assert all(set(state.values()) == {"ieee"} for state in states), name
        assert _state() == lowered, f"{name} left the switches changed"
    for folder in ("ocr", "mask", "sink", "o"):
        assert yaml.safe_load((tmp_path / folder / "config.yaml").read_text())["float32"] == "ieee", folder


def test_verify_reports_the_setting_inside_runs_and_the_process_outside(adapter_and_data, lowered):
    adapter, data, seen = adapter_and_data
    sample = read_manifest(data)[0]
    checks = {check.name: check for check in verify(adapter, sample, open_pages(data, sample))}
    assert all(set(state.values()) == {"ieee"} for state in seen)
    precision = checks["float32 matmuls and convolutions"]
    assert (precision.status, precision.value) == ("pass", "ieee")
    for name, value in LOWERED.items():
        assert f"{name} {value}" in precision.detail
    assert _state() == lowered
