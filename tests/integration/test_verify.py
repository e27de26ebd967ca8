"""`ocrheads verify` passes on every tiny family and the demo model, in float32 and bfloat16, and fails when the
attention function or its mask is broken."""

from dataclasses import replace

import pytest
import torch
from PIL import Image

from ocrheads.attention import function
from ocrheads.cli import main
from ocrheads.data.generate import generate
from ocrheads.demo.settings import BUNDLED_MODEL
from ocrheads.testing.tiny import FAMILIES
from ocrheads.verify import verify

from .tiny_inputs import tiny_adapter


@pytest.fixture(scope="module")
def passkey(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify") / "data"
    [sample] = generate("passkey", folder, n=1, lengths=(120,), digits=4, seed=3, progress=False)
    return sample, [Image.open(folder / page).convert("RGB") for page in sample.pages]


def unmasked_bias(masking, rows, dtype=torch.float32):
    """A broken mask: every query row sees every key, padding and the future included."""
    return torch.zeros(rows.shape[0], 1, rows.shape[1], masking.k_len, dtype=dtype, device=rows.device)


def _by_name(checks):
    return {check.name: check for check in checks}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_passes_in_float32_and_bfloat16(family, dtype, passkey):
    adapter = tiny_adapter(family)
    adapter.model.to(dtype)
    checks = _by_name(verify(adapter, *passkey))
    failed = [f"{c.name}: {c.value} {c.detail}" for c in checks.values() if c.status == "fail"]
    assert not failed, failed
    for name in (
        "image placeholders",
        "image tokens and grids",
        "logits: ocrheads vs the model's attention",
        "captured rows vs float64",
    ):
        assert checks[name].status == "pass", name
    assert float(checks["captured rows vs float64"].value) <= 1e-6
    eager = checks["captured rows vs eager attention"]
    assert eager.status == ("pass" if dtype == torch.float32 else "info")
    decoding = checks["decoding rows vs a teacher-forced pass"]
    assert decoding.status == ("pass" if dtype == torch.float32 else "info")
    assert " x 1 rows" not in decoding.detail  # decoding steps were compared, not only the prefill's row


def test_a_broken_mask_or_output_fails(passkey, monkeypatch):
    adapter = tiny_adapter("qwen2_vl")
    with monkeypatch.context() as broken:  # rows see every key, padding and the future included
        broken.setattr(function._Masking, "bias", unmasked_bias)
        checks = _by_name(verify(adapter, *passkey))
    assert checks["captured rows vs float64"].status == "fail"
    assert checks["captured rows vs eager attention"].status == "fail"
    sdpa = function.sdpa_attention_forward

    def drifting(*args, **kwargs):
        output, weights = sdpa(*args, **kwargs)
        return output * 1.01, weights

    with monkeypatch.context() as broken:
        broken.setattr(function, "sdpa_attention_forward", drifting)
        checks = _by_name(verify(adapter, *passkey))
    assert checks["logits: ocrheads vs the model's attention"].status == "fail"
    assert checks["captured rows vs float64"].status == "pass"


def test_a_decoding_row_that_sees_later_keys_fails(passkey, monkeypatch):
    """Deferred decoding rows computed against the last step's keys with those keys left unmasked: the prefill and
    teacher-forced checks cannot see it, the decoding check must."""
    adapter = tiny_adapter("qwen2_vl")
    joined = function._joined_rows

    def unmasked(steps, call, capture):
        rows = joined(steps, call, capture)
        return replace(rows, bias=torch.zeros_like(rows.bias))

    monkeypatch.setattr(function, "_joined_rows", unmasked)
    checks = _by_name(verify(adapter, *passkey))
    assert checks["decoding rows vs a teacher-forced pass"].status == "fail"
    assert checks["captured rows vs float64"].status == "pass"


def test_the_cli_passes_on_the_demo_model_and_exits_1_on_a_broken_function(capsys, monkeypatch):
    assert main(["verify", "--model", str(BUNDLED_MODEL), "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "the paper's method" in out
    monkeypatch.setattr(function._Masking, "bias", unmasked_bias)
    assert main(["verify", "--model", str(BUNDLED_MODEL)]) == 1
    assert "check(s) failed: captured rows vs float64, captured rows vs eager attention" in capsys.readouterr().out
    assert main(["verify", "--model", str(BUNDLED_MODEL), "--sample", "passkey-00000"]) == 2
