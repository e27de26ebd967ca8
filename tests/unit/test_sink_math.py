import torch

from ocrheads.attention.function import _redistribute_sink
from ocrheads.attention.requests import SinkRedistribution


def _probs(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 5, 7, generator=generator) * 3
    causal = torch.arange(7)[None, :] <= torch.arange(2, 7)[:, None]
    return logits.masked_fill(~causal, float("-inf")).softmax(-1)


def test_rows_still_sum_to_one_and_sink_keeps_beta():
    probs = _probs(0)
    sinks = torch.zeros(2, 7, dtype=torch.bool)
    sinks[:, 0] = True
    for beta in (0.0, 0.4, 1.0):
        edited = _redistribute_sink(probs, SinkRedistribution({}, beta, sinks), slice(0, 7))
        assert torch.allclose(edited.sum(-1), torch.ones(2, 3, 5), atol=1e-6)
        assert torch.allclose(edited[..., 0], beta * probs[..., 0], atol=1e-7)
        ratio = edited[..., 1:] / probs[..., 1:].clamp_min(1e-30)
        live = probs[..., 1:] > 1e-12
        # every receiver is scaled by the same factor within a row
        assert torch.allclose(ratio.where(live, 0).amax(-1), ratio.where(live, float("inf")).amin(-1), atol=1e-5)


def test_image_only_receivers_leave_other_keys_alone():
    probs = _probs(1)
    sinks = torch.zeros(2, 7, dtype=torch.bool)
    sinks[:, 0] = True
    image = torch.zeros(2, 7, dtype=torch.bool)
    image[:, 2:5] = True
    edited = _redistribute_sink(probs, SinkRedistribution({}, 0.4, sinks, receivers=image), slice(0, 7))
    text = ~image & ~sinks
    assert torch.equal(edited[..., text[0]], probs[..., text[0]])
    moved = 0.6 * probs[..., 0]
    assert torch.allclose(edited[..., image[0]].sum(-1), probs[..., image[0]].sum(-1) + moved, atol=1e-6)


def test_a_row_that_sees_only_the_sink_is_unchanged():
    probs = torch.zeros(1, 1, 1, 4)
    probs[..., 0] = 1.0
    sinks = torch.tensor([[True, False, False, False]])
    assert torch.equal(_redistribute_sink(probs, SinkRedistribution({}, 0.4, sinks), slice(0, 4)), probs)
