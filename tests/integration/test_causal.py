"""Causal head scores: the attribution estimate is the first-order term of ablating a head (checked by a central
finite difference that scales the head's slice of o_proj's input, independently of the attention function), it
equals the exact ablation where the metric is linear in the head, and the exact scores, batched over heads, equal
one forward pass per head."""

import pytest
import torch

from ocrheads.attention import Edits, attention_session, install
from ocrheads.scoring.causal import answer_metric, estimate, exact, teacher_forced

from .tiny_inputs import page, tiny_adapter

FAMILIES = ("qwen2_vl", "llava", "gemma3")


def _forced(adapter):
    pages = [[page(112, 56, "42")], [page(56, 56, "7")]]
    batch = adapter.encode([adapter.prompt("What is it?", 1)] * 2, pages)
    answers = [adapter.processor.tokenizer(text, add_special_tokens=False).input_ids for text in ("42", "7")]
    return teacher_forced(batch, answers)


def _o_proj(model, layer: int):
    return next(
        m for name, m in model.named_modules() if name.endswith(f"language_model.layers.{layer}.self_attn.o_proj")
    )


def _scaled_metric(adapter, forced, layer: int, head: int, factor: float, metric: str) -> torch.Tensor:
    """The metric with head `head`'s slice of o_proj's input multiplied by `factor` (a test-only hook)."""
    o_proj = _o_proj(adapter.model, layer)
    width = o_proj.in_features // adapter.grid[1]

    def scale(_, args):
        (hidden,) = args
        hidden = hidden.clone()
        hidden[..., head * width : (head + 1) * width] *= factor
        return (hidden,)

    handle = o_proj.register_forward_pre_hook(scale)
    try:
        with torch.no_grad():
            return answer_metric(adapter.model(**forced.inputs).logits, forced, metric).cpu()
    finally:
        handle.remove()


@pytest.fixture(scope="module", params=FAMILIES)
def float64_adapter(request):
    adapter = tiny_adapter(request.param)
    adapter.model.to(torch.float64)
    install(adapter.model)
    return adapter


def test_the_estimate_is_the_first_order_term_of_zero_ablation(float64_adapter):
    """d/de metric(clean + e (0 - clean)) at e = 0, by a central difference, for every head. The models' norms
    compute in float32 even in a float64 model, so the step is 1e-2 (truncation error about 1e-6 there)."""
    forced = _forced(float64_adapter)
    found = estimate(float64_adapter, forced)
    step = 1e-2
    layers, heads = float64_adapter.grid
    for layer in range(layers):
        for head in range(heads):
            up = _scaled_metric(float64_adapter, forced, layer, head, 1 - step, "logprob")
            down = _scaled_metric(float64_adapter, forced, layer, head, 1 + step, "logprob")
            derivative = ((up - down) / (2 * step)) * forced.valid
            assert torch.allclose(found[:, :, layer, head], derivative.float(), atol=1e-4), (layer, head)
    assert found.abs().max() > 1e-3  # the heads do matter: the comparison is not of zeros


def test_the_estimate_equals_exact_ablation_where_the_metric_is_linear_in_the_head():
    """With the final norm an identity and the last layer's MLP silenced, an answer token's logit is linear in
    every last-layer head's output (its log-probability is not)."""
    adapter = tiny_adapter("llava")
    adapter.model.to(torch.float64)
    install(adapter.model)
    text = adapter.model.model.language_model
    last = adapter.grid[0] - 1
    text.norm = torch.nn.Identity()
    with torch.no_grad():
        text.layers[last].mlp.down_proj.weight.zero_()
    forced = _forced(adapter)
    linear = estimate(adapter, forced, metric="logit")[:, :, last]
    assert torch.allclose(linear, exact(adapter, forced, metric="logit")[:, :, last], atol=1e-10)
    assert linear.abs().max() > 1e-3  # the heads move the logit: the comparison is not of zeros
    nonlinear = estimate(adapter, forced, metric="logprob")[:, :, last]
    gap = (nonlinear - exact(adapter, forced, metric="logprob")[:, :, last]).abs().max()
    assert gap > 1e-7  # the log-softmax is not linear: there the estimate is only first-order


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_exact_scores_batched_over_heads_equal_one_pass_per_head(ablation):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    forced = _forced(adapter)
    layers, heads = adapter.grid
    head_dim = adapter.model.config.get_text_config().hidden_size // heads
    means = {layer: torch.randn(heads, head_dim) for layer in range(layers)} if ablation == "mean" else None
    means = {layer: mean.to(adapter.device) for layer, mean in means.items()} if means else None
    batched = exact(adapter, forced, ablation, means, heads_per_pass=3)
    with torch.no_grad():
        clean = answer_metric(adapter.model(**forced.inputs).logits, forced, "logprob").cpu()
        for layer in range(layers):
            for head in range(heads):
                if ablation == "zero":
                    edits = Edits(zero={layer: (head,)})
                else:
                    edits = Edits(mean={layer: ((head,), means[layer][head : head + 1])})
                with attention_session(adapter.model, edits=edits):
                    ablated = answer_metric(adapter.model(**forced.inputs).logits, forced, "logprob").cpu()
                expected = (ablated - clean) * forced.valid
                assert torch.allclose(batched[:, :, layer, head], expected, atol=1e-5), (layer, head)
