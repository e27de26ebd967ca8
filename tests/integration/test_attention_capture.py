"""Captured rows equal transformers' own eager `output_attentions` rows, in prefill and cached decoding."""

import pytest
import torch

from ocrheads.attention import Capture, attention_session, install, kept_logits, last_logits
from ocrheads.devices import to_cpu
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import CROSS, layer_kinds_of
from ocrheads.testing.tiny import FAMILIES

from .tiny_inputs import attention_layers, extend_for, padded_batch, tiny_model

TOLERANCE = 1e-5


def softcaps(model) -> bool:
    return getattr(model.config.get_text_config(), "attn_logit_softcapping", None) is not None


def _eager_attentions(model, batch):
    """Logits and attentions of eager attention, on the CPU (compared with CPU copies of what was captured)."""
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    return to_cpu(out.logits), to_cpu(out.attentions)


@pytest.mark.parametrize("family", FAMILIES)
def test_prefill_rows_equal_eager_rows_and_logits_are_unchanged(family):
    tiny = tiny_model(family)
    model, batch = tiny.model, padded_batch(tiny)
    eager_logits, eager = _eager_attentions(model, batch)
    if softcaps(model):  # SDPA cannot softcap: the model's own attention is its eager one
        sdpa_logits = eager_logits
    else:
        model.set_attn_implementation("sdpa")
        with torch.no_grad():
            sdpa_logits = to_cpu(model(**batch).logits)
    install(model)
    length = batch["input_ids"].shape[1]
    real = to_cpu(batch["attention_mask"]).bool()
    rows = torch.where(real, torch.arange(length), -1)  # every non-padding query row
    eager_of = dict(zip(attention_layers(model), eager, strict=True))
    kinds = layer_kinds_of(model.config)
    cross = [layer for layer, kind in enumerate(kinds) if kind == CROSS]
    spaces = [([layer for layer in eager_of if layer not in cross], torch.stack([real, ~real], dim=1))]
    if cross:  # their keys are the image's: the first key set is its first half
        image_keys = eager_of[cross[0]].shape[-1]
        first = (torch.arange(image_keys) < image_keys // 2).expand(2, -1)
        spaces.append((cross, torch.stack([first, ~first], dim=1)))
    for layers, key_sets in spaces:
        capture = Capture(rows, key_sets=key_sets, keep_probs=True, layers=frozenset(layers))
        with torch.no_grad(), attention_session(model, capture=capture) as s:
            logits = to_cpu(model(**batch).logits)
        assert (logits - sdpa_logits).abs().max() < TOLERANCE
        # Padding rows differ between eager and SDPA themselves (fully masked rows); compare the real ones.
        assert (logits - eager_logits)[real].abs().max() < 1e-4
        assert s.layers == layers
        for layer in layers:
            captured, reference = to_cpu(s.captured(layer)), eager_of[layer]
            assert torch.equal(captured.positions, rows)
            for item in range(2):
                valid = rows[item] >= 0
                got = captured.probs[item][:, valid]
                want = reference[item][:, rows[item][valid]]
                assert (got - want).abs().max() < TOLERANCE, f"layer {layer} item {item}"
                assert torch.equal(captured.argmax[item][:, valid], got.argmax(-1))
                first_mass = captured.mass[item][:, valid, 0]
                assert (first_mass - want[..., key_sets[item, 0]].sum(-1)).abs().max() < TOLERANCE


@pytest.mark.parametrize("family", FAMILIES)
def test_decoding_rows_equal_eager_rows_of_the_full_sequence(family):
    tiny = tiny_model(family)
    model, batch = tiny.model, padded_batch(tiny)
    install(model)
    length = batch["input_ids"].shape[1]
    steps = 3
    # The last prompt row (prefill) and the rows of the generated tokens that are fed back (decoding steps).
    rows = torch.arange(length - 1, length + steps - 1).expand(2, -1)
    with torch.no_grad(), attention_session(model, capture=Capture(rows, keep_probs=True)) as s:
        sequences = model.generate(
            **batch, max_new_tokens=steps, do_sample=False, min_new_tokens=steps, **kept_logits(model)
        )
    _, eager = _eager_attentions(model, extend_for(batch, sequences, model.config.model_type))
    for layer, reference in zip(attention_layers(model), eager, strict=True):
        captured = to_cpu(s.captured(layer))
        keys = captured.probs.shape[-1]
        want = reference[:, :, rows[0], :keys]
        assert (captured.probs - want).abs().max() < TOLERANCE, f"layer {layer}"
        assert torch.equal(captured.argmax, captured.probs.argmax(-1))  # as positions, where the keys start late too


@pytest.mark.parametrize("family", ["qwen2_vl", "gemma3"])
def test_ragged_decoding_rows_equal_eager_rows(family):
    """Each item's rows one position apart: two decoding steps compute the same capture column (for different items),
    and the sliding-window layer of gemma3 drops keys while they do."""
    tiny = tiny_model(family)
    model, batch = tiny.model, padded_batch(tiny)
    install(model)
    length = batch["input_ids"].shape[1]
    steps = 4
    rows = torch.stack([torch.arange(length - 1, length + 2), torch.arange(length, length + 3)])
    with torch.no_grad(), attention_session(model, capture=Capture(rows, keep_probs=True)) as s:
        sequences = model.generate(
            **batch, max_new_tokens=steps, do_sample=False, min_new_tokens=steps, **kept_logits(model)
        )
    _, eager = _eager_attentions(model, extend_for(batch, sequences, model.config.model_type))
    for layer, reference in zip(attention_layers(model), eager, strict=True):
        captured = to_cpu(s.captured(layer))
        assert torch.equal(captured.positions, rows)
        keys = captured.probs.shape[-1]
        for item in range(2):
            want = reference[item, :, rows[item], :keys]
            assert (captured.probs[item] - want).abs().max() < TOLERANCE, f"layer {layer} item {item}"
        assert torch.equal(captured.argmax, captured.probs.argmax(-1))


def test_a_layer_computing_fewer_rows_than_its_call_is_refused():
    """Given an int logits_to_keep, Gemma 4 computes only those last rows in its key-sharing layers: a capture there
    would silently miss rows, so the session refuses, naming the fix; last_logits keeps every row."""
    tiny = tiny_model("gemma4")
    model, batch = tiny.model, padded_batch(tiny)
    install(model)
    length = batch["input_ids"].shape[1]
    capture = Capture(torch.arange(length - 3, length).expand(2, -1))
    refusal = r"layer 2 computed 1 of this forward call's \d+ rows.*last_logits"
    with pytest.raises(OcrHeadsError, match=refusal), torch.no_grad(), attention_session(model, capture=capture):
        model(**batch, logits_to_keep=1)
    with torch.no_grad(), attention_session(model, capture=capture) as session:
        model(**batch, logits_to_keep=last_logits())
    assert (to_cpu(session.captured(3).positions) == capture.rows).all()


def test_bad_requests_name_the_fix():
    tiny = tiny_model("qwen2_vl")
    model, batch = tiny.model, padded_batch(tiny)
    with pytest.raises(OcrHeadsError, match="install"), attention_session(model):
        pass
    install(model)
    far_layer = Capture(torch.zeros(2, 1, dtype=torch.long), layers=frozenset({7}))
    with pytest.raises(OcrHeadsError, match=r"layer\(s\) \[7\] outside the model \(layers 0..1\)"):
        attention_session(model, capture=far_layer).__enter__()
    length = batch["input_ids"].shape[1]
    beyond = Capture(torch.tensor([[length - 1], [length + 5]]))
    message = rf"row {length + 5} of batch item 1 was never computed: the sequence has {length} positions"
    with pytest.raises(OcrHeadsError, match=message), torch.no_grad(), attention_session(model, capture=beyond):
        model(**batch)
