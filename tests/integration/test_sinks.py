"""Sink detection by attention mass agrees with transformers' own eager attention at the last prompt row."""

import torch

from ocrheads.attention import install
from ocrheads.devices import to_cpu
from ocrheads.eval.sinks import first_sinks, mass_sinks

from .tiny_inputs import padded_batch, tiny_adapter


def test_mass_sinks_are_the_keys_the_heads_attend_most_in_eager_attention():
    adapter = tiny_adapter("qwen2_vl")
    model = adapter.model
    batch = padded_batch(adapter)
    heads = {0: (1, 3), 1: (0,)}
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = model(**batch, output_attentions=True).attentions
    mean = to_cpu(torch.cat([eager[layer][:, list(hs), -1] for layer, hs in heads.items()], 1).mean(1))
    threshold = float(mean.max(-1).values.min()) * 0.9  # every item has at least one sink
    install(model)
    found = mass_sinks(adapter, batch, heads, threshold, batch["input_ids"].shape[1] + 3)
    assert found.shape == (2, batch["input_ids"].shape[1] + 3) and not found[:, -3:].any()
    assert torch.equal(found[:, :-3], mean >= threshold)
    assert found.any(-1).all() and not found.all(-1).any()


def test_first_sinks_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    expected = torch.tensor([[0, 0, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(first_sinks(mask, 2, 6), expected)
