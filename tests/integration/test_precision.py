"""In bfloat16 and float16, captured rows equal a float64 computation from the very queries and keys the model
computed, and the model's logits stay its own attention's (SDPA's; eager's where it softcaps): on every family's tiny
model and on the demo model, left-padded."""

import pytest
import torch
from PIL import Image

from ocrheads.attention import Capture, attention_session, function, install, use_text_attention
from ocrheads.data.generate import generate
from ocrheads.demo.settings import BUNDLED_MODEL
from ocrheads.demo.task import DemoTask
from ocrheads.models import load_adapter
from ocrheads.testing.tiny import FAMILIES

from .tiny_inputs import LOAD_DEVICE, page, tiny_adapter

TOLERANCE = 1e-5


def _float64(query, key, mask, scaling, rows, softcap=None):
    """softmax(q k^T * scaling + mask) in float64 for query rows `rows` (batch, R) of one prefill call (the scaled
    logits capped to softcap * tanh(logits / softcap) first, where the layer softcaps)."""
    query = query.double().gather(2, rows[:, None, :, None].expand(-1, query.shape[1], -1, query.shape[-1]))
    key = key.double().repeat_interleave(query.shape[1] // key.shape[1], dim=1)
    logits = query @ key.transpose(-1, -2) * scaling
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    if mask is None:
        mask = torch.ones(key.shape[2], key.shape[2], dtype=torch.bool, device=key.device).tril()[None, None]
    mask = mask[..., : key.shape[2]].expand(query.shape[0], -1, -1, -1)
    mask = mask.gather(2, rows[:, None, :, None].expand(-1, 1, -1, key.shape[2]))
    logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask.double()
    return logits.softmax(-1)


def _check(adapter, batch, dtype, monkeypatch):
    """The model's logits are its own attention's (SDPA, or eager where it softcaps), and every captured row equals
    float64 from the queries and keys the attention function received."""
    model = adapter.model.to(dtype)
    softcap = getattr(model.config.get_text_config(), "attn_logit_softcapping", None)
    use_text_attention(model, "eager" if softcap else "sdpa")
    with torch.no_grad():
        own_logits = model(**batch).logits
    install(model)
    received = {}
    sdpa, eager = function.sdpa_attention_forward, function._eager_output

    def recording_sdpa(module, query, key, value, attention_mask, scaling=None, **kwargs):
        received[module.layer_idx] = (query, key, attention_mask, scaling)
        return sdpa(module, query, key, value, attention_mask, scaling=scaling, **kwargs)

    def recording_eager(module, call, dropout):
        received[module.layer_idx] = (call.query, call.key, call.masking.mask, call.scaling)
        return eager(module, call, dropout)

    real = batch["attention_mask"].bool()
    last = real.shape[1] - 1
    rows = torch.where(
        real, torch.arange(real.shape[1], device=real.device), last
    )  # every real row (padding rows: the last again)
    with monkeypatch.context() as recorded:
        recorded.setattr(function, "sdpa_attention_forward", recording_sdpa)
        recorded.setattr(function, "_eager_output", recording_eager)
        with torch.no_grad(), attention_session(model, capture=Capture(rows, keep_probs=True)) as session:
            logits = model(**batch).logits
    assert torch.equal(logits, own_logits)
    assert session.layers == sorted(received)
    for layer, (query, key, mask, scaling) in received.items():
        probs = session.captured(layer).probs
        assert probs.dtype == torch.float32
        reference = _float64(query, key, mask, scaling or query.shape[-1] ** -0.5, rows, softcap)
        assert (probs.double() - reference).abs().max() <= TOLERANCE, f"layer {layer}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_models_capture_exactly_in_half_precision(family, dtype, monkeypatch):
    adapter = tiny_adapter(family)
    adapter.model.to(dtype)
    prompts = [adapter.prompt("What is the pass key?", 1), adapter.prompt("Key?", 1)]
    batch = adapter.encode(prompts, [[page(120, 80, "12345")], [page(96, 64, "678")]])
    assert not batch["attention_mask"].bool().all()  # left-padded
    _check(adapter, batch, dtype, monkeypatch)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_demo_model_captures_exactly_on_a_padded_batch_of_two_pages(tmp_path, dtype, monkeypatch):
    task = DemoTask()
    options = dict(lengths=(task.context_length,), digits=task.digits, intro=task.intro, style=task.style(0))
    samples = generate("passkey", tmp_path / "data", n=2, seed=11, progress=False, fonts=task.fonts, **options)
    adapter = load_adapter(BUNDLED_MODEL, dtype=dtype, device=LOAD_DEVICE)
    pages = [[Image.open(tmp_path / "data" / s.pages[0]).convert("RGB")] for s in samples]
    prompts = [adapter.prompt(samples[0].question, 1), adapter.prompt("Key?", 1)]
    _check(adapter, adapter.encode(prompts, pages), dtype, monkeypatch)
