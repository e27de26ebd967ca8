"""Generation through ocrheads' encode does the prompt's work once: the pages go through the vision encoder once, the
Qwen families' 3D rope index is computed once, and every decoding step after the prefill feeds one token a sample
(the KV cache is used). Plain and while scoring captures the answer's rows. Any of these done per step would make
`generate` many times slower than a forward pass on a GPU, the symptom issue 30 asks to explain."""

import functools

import pytest
import torch

from ocrheads.attention import install
from ocrheads.scoring.options import scoring_options
from ocrheads.scoring.passes import write_answers
from ocrheads.testing.tiny import FAMILIES

from .tiny_inputs import page, tiny_adapter

NEW_TOKENS = 4


def _count_calls(owner, name: str, counts: dict) -> None:
    """Count calls of `owner.name` in `counts[name]`, keeping its signature (generate reads it to pre-encode pages)."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def counted(*args, **kwargs):
        counts[name] += 1
        return original(*args, **kwargs)

    setattr(owner, name, counted)


@pytest.fixture(params=FAMILIES)
def traced(request):
    """An adapter whose image encodes, rope index computations and token widths fed to the embeddings are recorded,
    and a left-padded batch of prompts with two pages and one page."""
    adapter = tiny_adapter(request.param)
    install(adapter.model)  # as a loaded model is
    inner = adapter.model.model
    counts = {"get_image_features": 0, "get_rope_index": 0}
    for name in counts:
        if hasattr(inner, name):
            _count_calls(inner, name, counts)
    if not hasattr(inner, "get_image_features"):  # Mllama calls its vision tower directly
        inner.vision_model.register_forward_hook(
            lambda *_: counts.update(get_image_features=counts["get_image_features"] + 1)
        )
    widths = []
    adapter.model.get_input_embeddings().register_forward_pre_hook(lambda _, args: widths.append(args[0].shape[1]))
    prompts = [adapter.prompt("What is the pass key?", 2), adapter.prompt("Key?", 1)]
    pages = [[page(120, 80, "12345"), page(96, 64, "99")], [page(96, 64, "678")]]
    batch = adapter.encode(prompts, pages)
    rope = hasattr(inner, "get_rope_index")  # the Qwen and GLM families' 3D rope index
    return adapter, batch, counts, widths, rope


def _check_work_done_once(batch, counts, widths, rope, steps: int) -> None:
    assert counts["get_image_features"] == 1
    assert counts["get_rope_index"] == int(rope)
    assert widths == [batch["input_ids"].shape[1]] + [1] * (steps - 1)


def test_plain_generate_encodes_the_prompt_once_and_feeds_one_token_a_step(traced):
    adapter, batch, counts, widths, rope = traced
    tokenizer = adapter.processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.no_grad():
        adapter.model.generate(
            **batch, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=pad
        )
    _check_work_done_once(batch, counts, widths, rope, NEW_TOKENS)


def test_scoring_generate_encodes_the_prompt_once_and_feeds_one_token_a_step(traced):
    adapter, batch, counts, widths, rope = traced
    written = write_answers(adapter, batch, scoring_options(max_new_tokens=NEW_TOKENS))
    longest = max(len(tokens) for tokens in written.tokens)
    assert len(widths) in (longest, longest + 1)  # a sample that ended early stops no other; one step per token
    _check_work_done_once(batch, counts, widths, rope, len(widths))


def test_the_image_token_is_never_written():
    """A model that would write the image token first of all: the adapter's generate writes its next choice, so the
    written answer can be fed back (a fed-back image token would ask for a page row the pixels do not give)."""
    adapter = tiny_adapter("minicpmv4_6")
    batch = adapter.encode([adapter.prompt("Key?", 1)], [[page(96, 64, "678")]])
    head = adapter.model.get_output_embeddings()
    with torch.no_grad():
        plain = adapter.generate(batch, NEW_TOKENS)[0, batch["input_ids"].shape[1] :]
        head.weight[adapter.image_token] = head.weight[int(plain[0])] * 10
        written = adapter.generate(batch, NEW_TOKENS)[0, batch["input_ids"].shape[1] :]
    assert adapter.image_token not in written.tolist()
    assert int(written[0]) == int(plain[0])
