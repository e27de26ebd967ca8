"""Causal head scores: the attribution estimate is the first-order term of ablating a head (checked by a central
finite difference that scales the head's slice of o_proj's input, independently of the attention function), it
equals the exact ablation where the metric is linear in the head, and the exact scores, batched over heads, equal
one forward pass per head."""

import math

import pytest
import torch
from transformers import BatchEncoding

from ocrheads.attention import Edits, attention_session, install
from ocrheads.scoring.attribution import _frozen, answer_metric, estimate, exact, largest_drops, teacher_forced

from .tiny_inputs import page, tiny_adapter

FAMILIES = ("qwen2_vl", "llava", "gemma3")


def _forced(adapter, answers=("42", "7")):
    pages = [[page(112, 56, answers[0])], [page(56, 56, answers[1])]]
    batch = adapter.encode([adapter.prompt("What is it?", 1)] * 2, pages)
    answers = [adapter.processor.tokenizer(text, add_special_tokens=False).input_ids for text in answers]
    return teacher_forced(batch, answers, adapter.written_token_types)


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
    step = 1e-3  # float64: the central differences' third-order error stays far under the tolerance
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
    forced = _forced(adapter, ("421", "7"))  # three backward passes on one graph
    linear = estimate(adapter, forced, metric="logit")[:, :, last]
    assert torch.allclose(linear, exact(adapter, forced, metric="logit")[:, :, last], atol=1e-10)
    assert linear.abs().max() > 1e-3  # the heads move the logit: the comparison is not of zeros
    nonlinear = estimate(adapter, forced, metric="logprob")[:, :, last]
    gap = (nonlinear - exact(adapter, forced, metric="logprob")[:, :, last]).abs().max()
    assert gap > 1e-7  # the log-softmax is not linear: there the estimate is only first-order


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_exact_scores_batched_over_heads_equal_one_pass_per_head(ablation):
    """Against passes that keep every row's logits; a three-token answer (the passes under test keep only the
    answer's rows: one more than its tokens)."""
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    forced = _forced(adapter, ("421", "7"))
    assert forced.targets.shape[1] == 3
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


def _path_metric(adapter, forced, along: float, target: dict, clean: dict, nudged: tuple[int, int], step: float):
    """The metric with every head's slice of o_proj's input moved `along` the way to `target` (layer -> (heads, D)),
    and head `nudged` (layer, head) moved a further `step` times its clean (ablated - clean): o_proj hooks only."""
    layers, heads = adapter.grid
    handles = []
    for layer in range(layers):

        def move(_, args, layer=layer):
            (hidden,) = args
            moved = hidden.unflatten(-1, (heads, -1))
            moved = moved + along * (target[layer] - moved)
            if layer == nudged[0]:
                moved[..., nudged[1], :] += step * (target[layer][nudged[1]] - clean[layer][..., nudged[1], :])
            return (moved.flatten(-2),)

        handles.append(_o_proj(adapter.model, layer).register_forward_pre_hook(move))
    try:
        with torch.no_grad():
            return answer_metric(adapter.model(**forced.inputs).logits, forced, "logprob").cpu()
    finally:
        for handle in handles:
            handle.remove()


def _clean_head_inputs(adapter, forced) -> dict:
    """Every layer's o_proj input in the clean pass, (batch, T, heads, D)."""
    layers, heads = adapter.grid
    kept, handles = {}, []
    for layer in range(layers):

        def keep(_, args, layer=layer):
            kept[layer] = args[0].unflatten(-1, (heads, -1)).clone()

        handles.append(_o_proj(adapter.model, layer).register_forward_pre_hook(keep))
    with torch.no_grad():
        adapter.model(**forced.inputs)
    for handle in handles:
        handle.remove()
    return kept


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_integrated_gradients_average_the_path_derivative_at_k_points(float64_adapter, ablation):
    """Integrated gradients with K = 2 steps, against central differences taken with o_proj hooks alone: at the
    points 0 and 1/2 of the path on which every head moves toward its ablated value together, the derivative along
    each head's clean (ablated - clean), averaged. With one step the path method is the first-order estimate."""
    forced = _forced(float64_adapter)
    layers, heads = float64_adapter.grid
    head_dim = float64_adapter.model.config.get_text_config().hidden_size // heads
    generator = torch.Generator().manual_seed(0)
    means = {layer: torch.randn(heads, head_dim, generator=generator).double() / 10 for layer in range(layers)}
    target = means if ablation == "mean" else {layer: torch.zeros(heads, head_dim) for layer in range(layers)}
    target = {layer: value.to(float64_adapter.device) for layer, value in target.items()}  # the o_proj hooks' device
    found = estimate(float64_adapter, forced, ablation, means, per_token=False, steps=2)[:, 0]
    clean = _clean_head_inputs(float64_adapter, forced)
    step = 1e-3  # float64: the central differences' third-order error stays far under the tolerance
    for layer in range(layers):
        for head in range(heads):
            derivatives = []
            for along in (0.0, 0.5):
                up = _path_metric(float64_adapter, forced, along, target, clean, (layer, head), step)
                down = _path_metric(float64_adapter, forced, along, target, clean, (layer, head), -step)
                derivatives.append(((up - down) / (2 * step)).sum(1))
            assert torch.allclose(found[:, layer, head], sum(derivatives).float() / 2, atol=1e-4), (layer, head)
    first_order = estimate(float64_adapter, forced, ablation, means, per_token=False)
    assert torch.equal(estimate(float64_adapter, forced, ablation, means, per_token=False, steps=1), first_order)
    assert (found - first_order[:, 0]).abs().max() > 1e-3  # the second point moves the estimate


def test_integrated_gradients_converge_to_exact_ablation_where_the_metric_depends_on_one_head():
    """Every MLP and every head but one silenced (their o_proj columns zero): the answer's log-probability is a
    nonlinear function of that one head's output, so the path sum tends to its exact ablation as K grows (the
    left Riemann sum's error falls as 1/K), while the first-order estimate misses it."""
    adapter = tiny_adapter("llava")
    adapter.model.to(torch.float64)
    install(adapter.model)
    text = adapter.model.model.language_model
    layers, heads = adapter.grid
    kept = (layers - 1, 1)
    width = text.layers[0].self_attn.o_proj.in_features // heads
    with torch.no_grad():
        for layer in range(layers):
            text.layers[layer].mlp.down_proj.weight.zero_()
            columns = text.layers[layer].self_attn.o_proj.weight
            for head in range(heads):
                if (layer, head) != kept:
                    columns[:, head * width : (head + 1) * width] = 0.0
        columns[:, kept[1] * width : (kept[1] + 1) * width] *= 30  # far enough to bend the log-softmax
    forced = _forced(adapter)
    measured = exact(adapter, forced).sum(1)[:, kept[0], kept[1]]
    gaps = [
        (estimate(adapter, forced, per_token=False, steps=k)[:, 0, kept[0], kept[1]] - measured).abs().max().item()
        for k in (1, 4, 16, 64)
    ]
    assert measured.abs().max() > 0.2 and gaps[0] > 0.1, (measured, gaps)  # the head matters, and not linearly
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < gaps[0] / 10, gaps


def test_the_two_stage_search_measures_its_heads_as_exact_ablation_does():
    """Exact ablation of each item's chosen heads (different heads per item, passes mixing layers) equals full
    exact ablation on those heads, and leaves the others unmeasured (NaN)."""
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    forced = _forced(adapter)
    layers, heads = adapter.grid
    full = exact(adapter, forced)
    chosen = torch.tensor([[0, heads + 2, 2 * heads - 1], [layers * heads - 1, 1, heads]])
    measured = exact(adapter, forced, chosen=chosen, heads_per_pass=2)
    for item in range(2):
        picked = set(chosen[item].tolist())
        for flat in range(layers * heads):
            layer, head = divmod(flat, heads)
            values = measured[item, :, layer, head][forced.valid[item]]
            if flat in picked:
                assert torch.allclose(values, full[item, :, layer, head][forced.valid[item]], atol=1e-5), flat
            else:
                assert values.isnan().all(), flat


def test_teacher_forcing_appends_ragged_answers_padded_and_unattended():
    """Answers of 3 and 1 tokens after a left-padded prompt of 4: the shorter is padded by 2 with id 0 (never
    attended), and answer token j of either item is predicted by row 3 + j."""
    batch = BatchEncoding({"input_ids": torch.tensor([[5, 6, 7, 8], [0, 0, 6, 7]]),
                           "attention_mask": torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])})  # fmt: skip
    forced = teacher_forced(batch, [[11, 12, 13], [14]])
    assert forced.inputs["input_ids"].tolist() == [[5, 6, 7, 8, 11, 12, 13], [0, 0, 6, 7, 14, 0, 0]]
    assert forced.inputs["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]]
    assert forced.targets.tolist() == [[11, 12, 13], [14, 0, 0]]
    assert forced.valid.tolist() == [[True, True, True], [True, False, False]]
    assert forced.rows.tolist() == [[3, 4, 5], [3, 4, 5]]


def test_the_two_stage_search_picks_each_items_largest_estimated_drops():
    """Drops are the negated change of the whole answer's metric (summed over its tokens), flat index layer * heads
    + head; more heads asked for than the model has gives them all."""
    estimates = torch.tensor(
        [
            [[[-1.0, 0.5, -3.0], [0.0, -2.0, 1.0]], [[-1.5, 0.0, 0.0], [0.0, 0.0, 0.0]]],  # drops 2.5 -0.5 3 0 2 -1
            [[[0.2, 0.1, 0.0], [-0.1, 0.0, 0.3]], [[0.0, 0.0, 0.0], [0.0, -0.4, 0.0]]],  # drops -.2 -.1 0 .1 .4 -.3
        ]
    )  # (batch 2, answer tokens 2, layers 2, heads 3)
    assert largest_drops(estimates, 2).tolist() == [[2, 0], [4, 3]]
    assert sorted(largest_drops(estimates, 10)[0].tolist()) == list(range(6))


def test_the_answer_metric_reads_each_answer_token_at_the_row_before_it():
    """Hand-made logits over a vocabulary of 3: each answer token's log-probability (or logit) at the row that
    predicts it, from every row's logits or from the last rows only, and 0 where an answer is shorter."""
    batch = BatchEncoding({"input_ids": torch.tensor([[5, 6], [0, 6]]),
                           "attention_mask": torch.tensor([[1, 1], [0, 1]])})  # fmt: skip
    forced = teacher_forced(batch, [[2, 1], [0]])  # rows 1 and 2 predict answer tokens 0 and 1
    logits = torch.zeros(2, 4, 3)
    logits[0, 1] = torch.tensor([0.0, 0.0, math.log(2)])  # p(2) = 2/4
    logits[0, 2] = torch.tensor([math.log(3), 0.0, 0.0])  # p(1) = 1/5
    logits[1, 1] = 1.0  # p(0) = 1/3
    logits[1, 2] = torch.tensor([5.0, 6.0, 7.0])  # past item 1's answer
    logprob = torch.tensor([[math.log(2 / 4), math.log(1 / 5)], [math.log(1 / 3), 0.0]])
    assert torch.allclose(answer_metric(logits, forced, "logprob"), logprob)
    assert torch.allclose(answer_metric(logits[:, 1:], forced, "logprob"), logprob)  # logits_to_keep = 3
    assert torch.allclose(answer_metric(logits, forced, "logit"), torch.tensor([[math.log(2), 0.0], [1.0, 0.0]]))


def test_estimating_freezes_the_weights_that_learn_and_then_restores_them():
    """No weight gradient is built while estimating; afterwards each weight learns again, or not, as before."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    model[1].weight.requires_grad_(False)
    before = [parameter.requires_grad for parameter in model.parameters()]
    with _frozen(model):
        assert not any(parameter.requires_grad for parameter in model.parameters())
    assert [parameter.requires_grad for parameter in model.parameters()] == before == [True, True, False, True]
