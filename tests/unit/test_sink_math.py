import math

import torch

from ocrheads.attention.function import _redistribute_sink
from ocrheads.attention.requests import SinkRedistribution


def _logits(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 5, 7, generator=generator) * 3
    causal = torch.arange(7)[None, :] <= torch.arange(2, 7)[:, None]
    return logits.masked_fill(~causal, float("-inf"))


def test_rows_still_sum_to_one_and_sink_keeps_beta():
    logits = _logits(0)
    probs = logits.softmax(-1)
    sinks = torch.zeros(2, 7, dtype=torch.bool)
    sinks[:, 0] = True
    for beta in (0.0, 0.4, 1.0):
        edited = _redistribute_sink(logits, SinkRedistribution({}, beta, sinks), slice(0, 7))
        assert torch.allclose(edited.sum(-1), torch.ones(2, 3, 5), atol=1e-6)
        assert torch.allclose(edited[..., 0], beta * probs[..., 0], atol=1e-7)
        ratio = edited[..., 1:] / probs[..., 1:].clamp_min(1e-30)
        live = probs[..., 1:] > 1e-12
        # every receiver is scaled by the same factor within a row
        assert torch.allclose(ratio.where(live, 0).amax(-1), ratio.where(live, float("inf")).amin(-1), atol=1e-5)


def test_image_only_receivers_leave_other_keys_alone():
    logits = _logits(1)
    probs = logits.softmax(-1)
    sinks = torch.zeros(2, 7, dtype=torch.bool)
    sinks[:, 0] = True
    image = torch.zeros(2, 7, dtype=torch.bool)
    image[:, 2:5] = True
    edited = _redistribute_sink(logits, SinkRedistribution({}, 0.4, sinks, receivers=image), slice(0, 7))
    text = ~image & ~sinks
    assert torch.equal(edited[..., text[0]], probs[..., text[0]])
    moved = 0.6 * probs[..., 0]
    assert torch.allclose(edited[..., image[0]].sum(-1), probs[..., image[0]].sum(-1) + moved, atol=1e-6)


def test_a_row_that_sees_only_the_sink_is_unchanged():
    logits = torch.tensor([0.0, float("-inf"), float("-inf"), float("-inf")]).reshape(1, 1, 1, 4)
    sinks = torch.tensor([[True, False, False, False]])
    edited = _redistribute_sink(logits, SinkRedistribution({}, 0.4, sinks), slice(0, 4))
    assert torch.equal(edited, torch.tensor([1.0, 0.0, 0.0, 0.0]).reshape(1, 1, 1, 4))


def test_a_sink_that_holds_nearly_everything_still_gives_its_mass_in_proportion():
    """Receivers at e^-100 and e^-105 of the sink: their mass underflows in float32 (the first is subnormal, the
    second zero), and dividing by it gave NaN; their proportions are 1 : e^-5 all the same."""
    logits = torch.tensor([[100.0, 0.0, -5.0, float("-inf")], [100.0, -30.0, -35.0, 0.0]]).reshape(2, 1, 1, 4)
    masked = torch.finfo(torch.float32).min  # keys masked the way the attention function's bias masks them
    logits[1, ..., 3] += masked
    sinks = torch.tensor([[True, False, False, False]] * 2)
    edited = _redistribute_sink(logits, SinkRedistribution({}, 0.25, sinks), slice(0, 4))
    first = 1 / (1 + math.exp(-5))
    expected = torch.tensor([0.25, 0.75 * first, 0.75 * (1 - first), 0.0]).expand(2, 4).reshape(2, 1, 1, 4)
    torch.testing.assert_close(edited, expected, rtol=1e-6, atol=0)
