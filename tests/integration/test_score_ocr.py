"""OCR scores on tiny models of every family equal a slow reference computed from eager `output_attentions`."""

import numpy as np
import pytest
import torch
from PIL import Image

from ocrheads.attention import install
from ocrheads.data.generate import generate
from ocrheads.devices import to_cpu
from ocrheads.errors import DataError
from ocrheads.heads import Head
from ocrheads.scoring.kinds import OCR
from ocrheads.scoring.ocr import score_ocr_batch
from ocrheads.scoring.options import scoring_options
from ocrheads.testing.tiny import FAMILIES

from ..evidence_truth import evidence_tokens
from .tiny_inputs import attention_layers, extend_for, tiny_adapter


@pytest.fixture(scope="module")
def passkeys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("passkey")
    samples = generate("passkey", folder / "data", n=2, lengths=(120, 200), digits=4, seed=3)
    return [(s, [Image.open(folder / "data" / p).convert("RGB") for p in s.pages]) for s in samples]


def _reference(adapter, sample, pages, written, options, token_index, units):
    """Eager attention of the full written sequence: per layer and head, (argmax key, mass on evidence); evidence from
    the sample's character boxes by `evidence_truth`, not by ocrheads' geometry."""
    prompt = adapter.prompt(sample.question, len(pages))
    batch = adapter.encode([prompt], [pages])
    images = adapter.image_tokens(batch, [[p.size for p in pages]])[0]
    length = batch["input_ids"].shape[1]
    truncate = options.box_rounding == "truncate"
    rules = {False: ("any", 0.0), True: ("coverage", options.evidence_threshold)}  # the two presets' rules
    assert (options.evidence_rule, options.evidence_threshold) == rules[truncate] and options.alignment == "offsets"
    evidence = set()
    for unit in units:  # answer characters: the sample's own boxes
        char = sample.answer_chars[unit]
        if char.box is not None:
            evidence |= evidence_tokens(char.box, images[char.page], truncate, options.evidence_threshold)
    ids = batch["input_ids"]
    sequence = torch.cat([ids, torch.tensor([written], device=ids.device)], 1)
    extended = extend_for(batch, sequence, adapter.model.config.model_type)
    adapter.model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = adapter.model(**extended, output_attentions=True).attentions
    install(adapter.model)
    row = length + token_index - (1 if options.row == "producing" else 0)
    by_layer = dict(zip(attention_layers(adapter.model), attentions, strict=True))
    scored = OCR.scored_layers(adapter.layer_kinds)
    probs = torch.stack([by_layer[layer][0, :, row] for layer in scored])  # (layers, heads, keys)
    image_keys = adapter.image_keys == "cross"  # every key is the image's: all of them in the prompt
    eligible = probs if options.argmax_keys == "all" or image_keys else probs[..., : length - 1]
    mass = probs[..., sorted(evidence)].sum(-1)
    return to_cpu(eligible.argmax(-1)), to_cpu(mass), evidence, row


def _check_against_reference(adapter, sample, pages, options):
    table = OCR.table_for(adapter)
    [outcome] = score_ocr_batch(adapter, [sample], [pages], options, table)
    assert outcome.scored and outcome.reason == "", outcome.reason
    rows = table.arrays()
    tokenizer = adapter.processor.tokenizer
    written = tokenizer(outcome.written, add_special_tokens=False).input_ids if options.answers == "gold" else None
    checked = 0
    for token in sorted(set(rows["token"].tolist())):
        here = rows["token"] == token
        ids = written or _written_ids(adapter, sample, pages, options)
        units = tuple(sorted({u for u in range(len(sample.answer_chars))} & _units_of(sample, ids, token, tokenizer)))
        argmax, mass, evidence, row = _reference(adapter, sample, pages, ids, options, token, units)
        assert set(rows["row"][here]) == {row}
        assert torch.equal(torch.from_numpy(rows["argmax_key"][here]).long(), argmax.flatten())
        assert torch.allclose(torch.from_numpy(rows["mass"][here]), mass.flatten(), atol=1e-5)
        hits = torch.tensor([int(k) in evidence for k in argmax.flatten()])
        assert torch.equal(torch.from_numpy(rows["hit"][here]), hits)
        checked += 1
    assert outcome.entries == checked
    return checked, rows


def _written_ids(adapter, sample, pages, options):
    prompt = adapter.prompt(sample.question, len(pages))
    batch = adapter.encode([prompt], [pages])
    with torch.no_grad():
        out = adapter.model.generate(**batch, max_new_tokens=options.max_new_tokens, do_sample=False)
    return out[0, batch["input_ids"].shape[1] :].tolist()


def _units_of(sample, ids, token, tokenizer):
    """Answer characters written by token `token` (by decoded prefix lengths)."""
    before = len(tokenizer.decode(ids[:token], skip_special_tokens=True))
    after = len(tokenizer.decode(ids[: token + 1], skip_special_tokens=True))
    text = tokenizer.decode(ids, skip_special_tokens=True)
    start = text.find(sample.answer)
    return {g - start for g in range(before, after)}


@pytest.mark.parametrize("family", FAMILIES)
def test_teacher_forced_answers_score_like_eager_attention(family, passkeys):
    adapter = tiny_adapter(family)
    install(adapter.model)
    sample, pages = passkeys[0]
    checked, rows = _check_against_reference(adapter, sample, pages, scoring_options(answers="gold"))
    assert checked >= 2
    layers, heads = OCR.scored_layers(adapter.layer_kinds), adapter.grid[1]  # layers with attention weights
    assert len(rows["sample"]) == checked * len(layers) * heads
    assert sorted(set(rows["layer"].tolist())) == layers
    assert set(rows["c"]) == {1.0}


@pytest.mark.parametrize("family", ["qwen2_vl", "internvl", "gemma3"])
def test_generated_answers_score_like_eager_attention_under_both_presets(family, passkeys):
    adapter = tiny_adapter(family)
    install(adapter.model)
    sample, pages = passkeys[1]
    written = adapter.processor.tokenizer.decode(
        _written_ids(adapter, sample, pages, scoring_options(max_new_tokens=6)), skip_special_tokens=True
    )
    answer = written[1:4]  # make the sample's answer what this random model writes, boxes of 3 digits
    mimic = sample.model_copy(update={"answer": answer, "answer_chars": sample.answer_chars[:3]})
    for preset in ("default", "paper-code"):
        options = scoring_options(preset, max_new_tokens=6, alignment="offsets")
        checked, _ = _check_against_reference(adapter, mimic, pages, options)
        assert checked >= 1, preset


def test_tokens_that_cannot_be_scored_are_skipped_and_later_ones_still_score(passkeys):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    sample, pages = passkeys[0]
    digits = len(sample.answer)
    first = sample.answer_chars[0].model_copy(update={"box": None})  # a first character without ink
    inkless = sample.model_copy(update={"answer_chars": [first, *sample.answer_chars[1:]]})
    _, rows = _check_against_reference(adapter, inkless, pages, scoring_options(answers="gold"))
    assert sorted(set(rows["token"].tolist())) == list(range(1, digits))  # one token per digit
    options = scoring_options("paper-code", max_new_tokens=6, alignment="offsets")  # rows that read a token back
    ids = _written_ids(adapter, sample, pages, options)
    written = adapter.processor.tokenizer.decode(ids, skip_special_tokens=True)
    ending = sample.model_copy(update={"answer": written[-3:], "answer_chars": sample.answer_chars[:3]})
    _, rows = _check_against_reference(adapter, ending, pages, options)
    last = len(ids) - 1  # written last, never read back: its row is not computed
    assert last - 1 in set(rows["token"].tolist()) and last not in set(rows["token"].tolist())


def test_an_answer_the_model_does_not_write_scores_nothing_and_says_what_it_wrote(passkeys):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    sample, pages = passkeys[0]
    options = scoring_options(max_new_tokens=200)
    written = adapter.processor.tokenizer.decode(
        _written_ids(adapter, sample, pages, options), skip_special_tokens=True
    )
    assert len(written) > 80 and sample.answer not in written  # a random model: long, and not the key
    table = OCR.table_for(adapter)
    [outcome] = score_ocr_batch(adapter, [sample], [pages], options, table)
    assert (outcome.scored, outcome.entries, len(table.arrays()["sample"])) == (False, 0, 0)
    answer, shown = sample.answer, written[:80]
    assert outcome.reason == f"the answer is nowhere in what the model wrote (answer {answer!r}, written {shown!r})"


def test_a_one_digit_answer_scores_and_a_sample_without_boxes_is_refused_by_name(passkeys, tmp_path):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    sample, pages = passkeys[0]
    one = sample.model_copy(update={"answer": sample.answer[:1], "answer_chars": sample.answer_chars[:1]})
    checked, _ = _check_against_reference(adapter, one, pages, scoring_options(answers="gold"))
    assert checked == 1
    boxless = sample.model_copy(update={"id": "no-ink", "answer_chars": [c.model_copy(update={"box": None})
                                                                        for c in sample.answer_chars]})  # fmt: skip
    with pytest.raises(DataError, match=f"sample no-ink in {tmp_path} has no answer boxes; ocr scores need"):
        OCR.check_samples([sample, boxless], tmp_path)


def test_ocr_head_scores_keep_one_entry_per_answer_token():
    """METHOD.md 2.3: an OCR head's list has an entry per written answer token, not per sample."""
    columns = {"sample": np.array(["a", "a", "a", "a", "b", "b"]), "value": np.array([1.0, 0, 0, 1, 1, 1])}
    scores = OCR.head_scores(columns, (1, 2), [0])
    assert scores.lists[Head(0, 0)].tolist() == [1.0, 0.0, 1.0] and scores.lists[Head(0, 1)].tolist() == [0.0, 1.0, 1.0]
