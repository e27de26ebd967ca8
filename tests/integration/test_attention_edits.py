"""Head edits equal independent references: projection hooks, and the paper's sink formula computed eagerly."""

import pytest
import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from ocrheads.attention import Edits, OutputSums, SinkRedistribution, attention_session, install, kept_logits
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import CROSS, layer_kinds_of
from ocrheads.testing.tiny import FAMILIES

from .tiny_inputs import padded_batch, tiny_model

TOLERANCE = 1e-5


def text_attention_modules(model):
    """The text model's softmax attention modules by layer (vision attention has no layer_idx; a linear-attention
    layer's has no o_proj)."""
    found = {m.layer_idx: m for m in model.modules() if hasattr(m, "layer_idx") and hasattr(m, "o_proj")}
    return [found[i] for i in sorted(found)]


def gated(attention) -> bool:
    """Qwen3.5's attention: q_proj also writes a gate per head (each head's query, then its gate), and the attention
    output is scaled by sigmoid(gate) before o_proj; the registered function's output is the one before the gate."""
    return attention.q_proj.out_features == 2 * attention.config.num_attention_heads * attention.head_dim


def query_columns(attention, head: int) -> slice:
    """Where head `head`'s query lies in q_proj's output."""
    width = attention.head_dim * (2 if gated(attention) else 1)
    return slice(head * width, head * width + attention.head_dim)


def recording_gates(attention, found: list):
    """A q_proj hook appending each call's output gates sigmoid(gate), (..., heads * head_dim); ones where the
    attention has no gate."""

    def hook(module, args, out):
        if not gated(attention):
            found.append(torch.ones(*out.shape[:-1], attention.o_proj.in_features, device=out.device))
            return
        per_head = out.view(*out.shape[:-1], -1, 2 * attention.head_dim)
        found.append(torch.sigmoid(per_head[..., attention.head_dim :]).flatten(-2))

    return attention.q_proj.register_forward_hook(hook)


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def hooked_logits(model, batch, register):
    """Logits with one hook in place: the independent reference an edit is compared with."""
    hook = register()
    try:
        return logits(model, batch)
    finally:
        hook.remove()


@pytest.fixture(params=FAMILIES)
def tiny_batch(request):
    tiny = tiny_model(request.param)
    batch = padded_batch(tiny)
    return install(tiny.model), batch, batch["attention_mask"].bool()


def test_zeroing_every_head_of_a_layer_removes_its_attention_output(tiny_batch):
    model, batch, real = tiny_batch
    attention = text_attention_modules(model)[1]
    heads = model.config.get_text_config().num_attention_heads
    with attention_session(model, edits=Edits(zero={attention.layer_idx: tuple(range(heads))})):
        edited = logits(model, batch)

    def remove_output(module, args, out):
        return (torch.zeros_like(out[0]), *out[1:])

    reference = hooked_logits(model, batch, lambda: attention.register_forward_hook(remove_output))
    assert (edited - reference)[real].abs().max() < TOLERANCE
    assert (edited - logits(model, batch))[real].abs().max() > 1e-3, "the edit must change something"


def test_zeroing_one_head_equals_zeroing_its_slice_before_o_proj(tiny_batch):
    model, batch, real = tiny_batch
    attention = text_attention_modules(model)[0]
    head, dim = 1, attention.head_dim

    def zero_slice(module, args):
        hidden = args[0].clone()
        hidden[..., head * dim : (head + 1) * dim] = 0
        return (hidden,)

    with attention_session(model, edits=Edits(zero={attention.layer_idx: (head,)})):
        edited = logits(model, batch)
    reference = hooked_logits(model, batch, lambda: attention.o_proj.register_forward_pre_hook(zero_slice))
    assert (edited - reference)[real].abs().max() < TOLERANCE
    assert (edited - logits(model, batch))[real].abs().max() > 1e-4


def test_uniform_head_equals_a_zeroed_query(tiny_batch):
    """A head whose query is 0 scores every key equally: uniform attention over what the mask allows."""
    model, batch, real = tiny_batch
    attention = text_attention_modules(model)[1]
    head = 2

    def zero_query(module, args, out):
        out = out.clone()
        out[..., query_columns(attention, head)] = 0
        return out

    with attention_session(model, edits=Edits(uniform={attention.layer_idx: (head,)})):
        edited = logits(model, batch)
    reference = hooked_logits(model, batch, lambda: attention.q_proj.register_forward_hook(zero_query))
    assert (edited - reference)[real].abs().max() < TOLERANCE
    assert (edited - logits(model, batch))[real].abs().max() > 1e-4


def test_output_sums_equal_the_slices_before_o_proj_over_real_tokens(tiny_batch):
    model, batch, real = tiny_batch
    attention = text_attention_modules(model)[1]
    seen, gates = [], []
    hooks = [attention.o_proj.register_forward_pre_hook(lambda _module, args: seen.append(args[0])),
             recording_gates(attention, gates)]  # fmt: skip
    try:
        with attention_session(model, output_sums=OutputSums(real)) as session:
            logits(model, batch)
    finally:
        for hook in hooks:
            hook.remove()
    heads = model.config.get_text_config().num_attention_heads
    expected = (seen[0] / gates[0])[real].unflatten(-1, (heads, -1)).sum(0)  # the outputs before any gate
    assert session.summed_tokens == int(real.sum())
    tolerance = TOLERANCE * max(1.0, float(expected.abs().max()))  # float32 sums of outputs up to ~100 (paligemma2)
    assert (session.sums[attention.layer_idx] - expected).abs().max() < tolerance
    assert sorted(session.sums) == [module.layer_idx for module in text_attention_modules(model)]
    with torch.no_grad(), attention_session(model, output_sums=OutputSums(real)) as generating:
        model.generate(**batch, max_new_tokens=2, do_sample=False, **kept_logits(model))
    assert generating.summed_tokens == int(real.sum())  # the written tokens lie past the mask: left out
    assert (generating.sums[attention.layer_idx] - expected).abs().max() < tolerance


def test_mean_edit_equals_setting_the_slice_before_o_proj(tiny_batch):
    model, batch, real = tiny_batch
    attention = text_attention_modules(model)[1]
    head, dim = 2, attention.head_dim
    vector = torch.linspace(-1, 1, dim)
    gates = []

    def set_slice(module, args):  # the head's output, scaled by its gate where the attention has one
        hidden = args[0].clone()
        columns = slice(head * dim, (head + 1) * dim)
        hidden[..., columns] = vector.to(hidden.device) * gates[-1][..., columns]
        return (hidden,)

    with attention_session(model, edits=Edits(mean={attention.layer_idx: ((head,), vector[None])})):
        edited = logits(model, batch)
    gate = recording_gates(attention, gates)
    try:
        reference = hooked_logits(model, batch, lambda: attention.o_proj.register_forward_pre_hook(set_slice))
    finally:
        gate.remove()
    assert (edited - reference)[real].abs().max() < TOLERANCE
    assert (edited - logits(model, batch))[real].abs().max() > 1e-4


def _paper_sink_reference(heads, beta, sink_index):
    """Eager attention with METHOD.md 5.2 written out: p0' = beta p0, pj' = pj + (1 - beta) p0 pj / S."""

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        key, value = repeat_kv(key, module.num_key_value_groups), repeat_kv(value, module.num_key_value_groups)
        scores = (query.float() @ key.float().transpose(2, 3)) * scaling
        if kwargs.get("softcap") is not None:  # Gemma 2's logit cap, before the mask
            scores = kwargs["softcap"] * torch.tanh(scores / kwargs["softcap"])
        scores = scores + attention_mask.float()
        probs = scores.softmax(-1)
        for item, sink in enumerate(sink_index):
            for h in heads.get(module.layer_idx, ()):
                row = probs[item, h]
                p0 = row[:, sink].clone()
                others = torch.ones(row.shape[-1], dtype=torch.bool)
                others[sink] = False
                rest = row[:, others].sum(-1)
                edited = row.clone()
                edited[:, sink] = beta * p0
                share = torch.where(rest > 0, (1 - beta) * p0 / torch.where(rest > 0, rest, 1), 0)
                edited[:, others] = row[:, others] + share[:, None] * row[:, others]
                probs[item, h] = torch.where(rest[:, None] > 0, edited, row)
        return (probs @ value.float()).to(value.dtype).transpose(1, 2).contiguous(), probs

    return attention


@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_sink_redistribution_equals_the_papers_formula_computed_eagerly(tiny_batch, beta):
    model, batch, real = tiny_batch
    kinds = layer_kinds_of(model.config)  # sinks are text positions: no sink edit in a cross-attention layer
    first, second = [m.layer_idx for m in text_attention_modules(model) if kinds[m.layer_idx] != CROSS][:2]
    heads = {first: (0, 3), second: (1,)}
    first_real = real.int().argmax(-1)
    sinks = torch.zeros_like(real)
    sinks[torch.arange(2), first_real] = True
    with attention_session(model, edits=Edits(sink=SinkRedistribution(heads, beta, sinks))):
        edited = logits(model, batch)
    AttentionInterface.register("paper_sink", _paper_sink_reference(heads, beta, first_real.tolist()))
    AttentionMaskInterface.register("paper_sink", eager_mask)
    model.set_attn_implementation({"text_config": "paper_sink"})
    try:
        reference = logits(model, batch)
    finally:
        install(model)
    assert (edited - reference)[real].abs().max() < TOLERANCE
    assert (edited - logits(model, batch))[real].abs().max() > 1e-5


def test_sink_with_beta_one_changes_nothing(tiny_batch):
    model, batch, real = tiny_batch
    sinks = torch.zeros_like(real)
    sinks[:, 0] = True
    with attention_session(model, edits=Edits(sink=SinkRedistribution({0: (0, 1, 2, 3)}, 1.0, sinks))):
        edited = logits(model, batch)
    assert (edited - logits(model, batch))[real].abs().max() < TOLERANCE


def test_edits_outside_the_model_are_refused():
    model = install(tiny_model("llava").model)
    with pytest.raises(
        OcrHeadsError, match=r"zeroed heads: head\(s\) \[4\] of layer 0 outside the model \(heads 0..3\)"
    ):
        attention_session(model, edits=Edits(zero={0: (4,)})).__enter__()
    with pytest.raises(OcrHeadsError, match=r"uniform heads: layer 2 is outside the model"):
        attention_session(model, edits=Edits(uniform={2: (0,)})).__enter__()
    cross = install(tiny_model("mllama").model)
    with pytest.raises(OcrHeadsError, match=r"sink heads: layer\(s\) \[1\] attend to the image's tokens"):
        attention_session(
            cross, edits=Edits(sink=SinkRedistribution({1: (0,)}, 0.5, torch.ones(1, 4, dtype=torch.bool)))
        ).__enter__()
    with pytest.raises(OcrHeadsError, match="beta must lie in"):
        attention_session(
            model, edits=Edits(sink=SinkRedistribution({0: (0,)}, 1.5, torch.ones(1, 4, dtype=torch.bool)))
        ).__enter__()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_heads_computed_here_are_computed_in_float32_from_half_precision_inputs(dtype):
    from ocrheads.attention import function

    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(1, n, 6, 8, generator=generator).to(dtype) * 3 for n in (4, 2, 2))
    call = function._Call(query, key, value, None, None, end=6)
    sinks = torch.zeros(1, 6, dtype=torch.bool)
    sinks[0, 0] = True
    beta, heads = 0.4, (1, 3)
    index = torch.tensor(heads)
    edited = function._head_outputs(call, index, "sink", SinkRedistribution({0: heads}, beta, sinks))
    uniform = function._head_outputs(call, index, "uniform")
    capped_call = function._Call(query, key, value, None, None, end=6, softcap=2.0)
    capped = function._head_outputs(capped_call, index, "sink", SinkRedistribution({0: heads}, 1.0, sinks))
    assert edited.dtype == uniform.dtype == capped.dtype == torch.float32
    q, k, v = (
        query.double()[:, heads],
        key.double()[:, [h // 2 for h in heads]],
        value.double()[:, [h // 2 for h in heads]],
    )
    logits = (q @ k.transpose(-1, -2)) * 8**-0.5
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    probs = logits.masked_fill(~causal, float("-inf")).softmax(-1)
    p0, rest = probs[..., :1], probs[..., 1:].sum(-1, keepdim=True)
    scale = torch.where(rest > 0, 1 + (1 - beta) * p0 / torch.where(rest > 0, rest, 1), 1)
    moved = torch.where(rest > 0, torch.cat([beta * p0, probs[..., 1:] * scale], -1), probs)
    assert (edited.double() - (moved @ v).transpose(1, 2)).abs().max() < 1e-5
    even = causal.double() / causal.sum(-1, keepdim=True)
    assert (uniform.double() - (even @ v).transpose(1, 2)).abs().max() < 1e-5
    softcapped = (2.0 * torch.tanh(logits / 2.0)).masked_fill(~causal, float("-inf")).softmax(-1)
    assert (capped.double() - (softcapped @ v).transpose(1, 2)).abs().max() < 1e-5  # beta 1: attention unchanged
    assert (capped.double() - (probs @ v).transpose(1, 2)).abs().max() > 0.01  # logits up to ~9 are past the cap
