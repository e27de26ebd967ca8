"""Retrieval scores on tiny models equal a slow reference computed from eager `output_attentions`; the samples it
refuses, and why."""

from itertools import groupby

import numpy as np
import pytest
import torch
from tokenizers.processors import TemplateProcessing

from ocrheads.attention import install
from ocrheads.data.generate import generate
from ocrheads.data.manifest import Sample
from ocrheads.demo.settings import BUNDLED_MODEL
from ocrheads.devices import to_cpu
from ocrheads.errors import OcrHeadsError
from ocrheads.heads import Head
from ocrheads.models import load_adapter
from ocrheads.scoring.answers import text_prompt
from ocrheads.scoring.kinds import OCR, RETRIEVAL
from ocrheads.scoring.options import scoring_options
from ocrheads.scoring.retrieval import score_retrieval_batch
from ocrheads.scoring.table import EntryTable

from .tiny_inputs import tiny_adapter


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("passkey-text") / "data"
    return generate("passkey", folder, n=2, lengths=(150, 250), digits=3, seed=5, modality="text")


def _repeated(key: str, context: str = "Pass key: {key}.") -> Sample:
    """A short text whose pass key repeats one digit: the needle is much of the prompt, and every needle token is
    the token being written, so even a random model's heads hit (the generated keys rarely give a hit)."""
    context = context.format(key=key)
    start = context.index(key)
    return Sample(id=f"repeated-{key}", task="passkey", modality="text", question="What is the pass key?",
                  answer=key, context=context, answer_span=(start, start + len(key)))  # fmt: skip


# Ragged repeat rows in one batch (11 against 4: no bit trick on the counts gives their difference); the longer
# prompt starts with its key, and its digit is also outside the key (a copy from there is a repeat).
REPEATED = [_repeated("7777777777", "{key}, not 7."), _repeated("3333")]


def _rewriting_questions(adapter, rewrite):
    """The adapter with each question rewritten before its prompt is built, as a chat template may do."""
    prompt = adapter.prompt
    adapter.prompt = lambda question, images: prompt(rewrite(question), images)
    return adapter


def _after_a_system_text(adapter):
    """The adapter's prompts with a system text first, as chat templates have (the tiny models have none): the
    context starts at 6 (0b110), an offset sharing bits with the first generated key's in it (165)."""
    return _rewriting_questions(adapter, lambda question: "Read:\n" + question)


def _eager_rows(adapter, samples):
    prompts = [adapter.prompt(text_prompt(s), 0) for s in samples]
    batch = adapter.encode(prompts, [[] for _ in samples])
    answers = [adapter.processor.tokenizer(s.answer, add_special_tokens=False).input_ids for s in samples]
    width = max(map(len, answers))
    device = batch["input_ids"].device
    tokens = torch.tensor([a + [0] * (width - len(a)) for a in answers], device=device)
    mask = torch.tensor([[1] * len(a) + [0] * (width - len(a)) for a in answers], device=device)
    full = dict(batch, input_ids=torch.cat([batch["input_ids"], tokens], 1))
    full["attention_mask"] = torch.cat([batch["attention_mask"], mask], 1)
    adapter.model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = adapter.model(**full, output_attentions=True).attentions
    install(adapter.model)
    ids = to_cpu(batch["input_ids"])
    needles = [_digit_tokens(adapter.processor.tokenizer, ids[i], s.answer) for i, s in enumerate(samples)]
    return to_cpu(dict(batch)), to_cpu(full["input_ids"]), to_cpu(torch.stack(attentions)), needles


def _digit_tokens(tokenizer, ids, answer: str) -> list[int]:
    """The needle found without the code under test: the one run of consecutive tokens holding digits whose digits
    spell the answer (a number elsewhere in the prompt is not it)."""
    digits = ["".join(char for char in tokenizer.decode([token]) if char.isdigit()) for token in ids.tolist()]
    runs = [[position for position, _ in run] for held, run in groupby(enumerate(digits), lambda d: bool(d[1])) if held]
    [needle] = [run for run in runs if "".join(digits[position] for position in run) == answer]
    return needle


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
@pytest.mark.parametrize(("preset", "reading"), [("default", None), ("default", "consuming"), ("paper-code", None)])
@pytest.mark.parametrize("keys", ["generated", "repeated"])
def test_teacher_forced_copy_scores_equal_eager_attention(family, preset, reading, keys, texts):
    """For the needle read on the rows that write the answer or on those that read it back, and the paper code's
    repeats. Gold answers give c = 1, so a minimum of 1 keeps every sample: the minimum is inclusive."""
    adapter = tiny_adapter(family)
    texts, adapter = (texts, _after_a_system_text(adapter)) if keys == "generated" else (REPEATED, adapter)
    install(adapter.model)
    options = scoring_options(preset, answers="gold", alignment="offsets", min_correct=1.0, row=reading)
    rows = _check_against_eager(adapter, texts, options)
    if keys == "repeated":  # the hits and values compared some True, not only False against False
        assert rows["hit"].any() and rows["value"].max() > 0


@pytest.mark.parametrize("preset", ["default", "paper-code"])
def test_a_bos_token_is_no_part_of_the_needle_or_the_repeats(preset):
    """LLaVA's, Gemma's and InternLM's tokenizers put a BOS token before every text they encode (the tiny models'
    do not): it starts every prompt, and is not in the answer."""
    adapter = _after_a_system_text(tiny_adapter("qwen2_vl"))
    tokenizer, bos = adapter.processor.tokenizer, "<|im_start|>"
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.convert_tokens_to_ids(bos))]
    )
    assert tokenizer("7").input_ids[0] == tokenizer.convert_tokens_to_ids(bos)
    install(adapter.model)
    _check_against_eager(adapter, REPEATED, scoring_options(preset, answers="gold", alignment="offsets"))


def _check_against_eager(adapter, texts, options) -> dict:
    """Every entry (rows, answer tokens, top keys, hits, values, needle mass) against eager attention; the entries."""
    producing = options.row == "producing"
    table = EntryTable(range(2), 4)
    outcomes = score_retrieval_batch(adapter, texts, options, table)
    assert all(o.scored and o.reason == "" for o in outcomes), outcomes
    rows = table.arrays()
    batch, ids, attentions, needles = _eager_rows(adapter, texts)
    length = batch["input_ids"].shape[1]
    for item, sample in enumerate(texts):
        pad = int((batch["attention_mask"][item] == 0).sum())
        mine = rows["sample"] == sample.id
        expected_rows = []
        if options.retrieval == "needle":
            expected_rows = [length - 1 + n + (not producing) for n in range(len(sample.answer))]
            denominator = len(needles[item])
        else:
            answer_ids = set(adapter.processor.tokenizer(sample.answer, add_special_tokens=False).input_ids)
            positions = [p for p in range(pad, ids.shape[1]) if int(ids[item, p]) in answer_ids]
            expected_rows = positions  # teacher forcing computes every row, the last answer token's included
            denominator = len(positions)
        assert sorted(set(rows["row"][mine] + pad)) == expected_rows
        assert outcomes[item].entries == len(expected_rows)
        for row in expected_rows:
            here = mine & (rows["row"] + pad == row)
            probs = attentions[:, item, :, row]  # (layers, heads, keys)
            if options.argmax_keys == "prompt":
                probs = probs[..., : length - 1]
            argmax = probs.argmax(-1).flatten()
            assert torch.equal(torch.from_numpy(rows["argmax_key"][here]).long() + pad, argmax)
            target = row + 1 if producing else row
            assert (rows["token"][here] == target - length).all()  # the answer token written; < 0 in the prompt
            copied = ids[item, argmax] == ids[item, target]
            if options.retrieval == "needle":
                copied &= torch.isin(argmax, torch.tensor(needles[item]))
            assert torch.equal(torch.from_numpy(rows["hit"][here]), copied)
            assert torch.allclose(torch.from_numpy(rows["value"][here]), copied.float() / denominator)
            needle_mass = attentions[:, item, :, row][..., needles[item]].sum(-1).flatten()
            assert torch.allclose(torch.from_numpy(rows["mass"][here]), needle_mass, atol=1e-5)
    return rows


@pytest.mark.parametrize(("key", "minimum"), [("generated", 0.9), ("4444", 0.0)])
def test_a_sample_below_the_minimum_c_scores_nothing_and_says_what_it_wrote(texts, key, minimum):
    """The random model writes a third of the generated key (c below 0.9), and none of 4444 (c = 0: no answer
    token to read, whatever the minimum)."""
    sample = texts[0] if key == "generated" else _repeated(key)
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    table = EntryTable(range(2), 4)
    options = scoring_options(min_correct=minimum, max_new_tokens=200)
    [outcome] = score_retrieval_batch(adapter, [sample], options, table)
    assert len(outcome.written) > 80 and outcome.c == (1 / 3 if key == "generated" else 0)
    assert (outcome.scored, outcome.entries, len(table.arrays()["sample"])) == (False, 0, 0)
    percent, shown = f"{outcome.c:.0%}", outcome.written[:80]
    assert outcome.reason == f"too little of the answer was written ({percent} of {sample.answer!r} in {shown!r})"


def test_a_refused_sample_leaves_the_rest_of_its_batch_scored(texts):
    adapter = tiny_adapter("qwen2_vl")
    install(adapter.model)
    batch = [_repeated("4444"), texts[0]]  # the random model writes none of 4444, and some of the other key
    outcomes = score_retrieval_batch(adapter, batch, scoring_options(max_new_tokens=200), EntryTable(range(2), 4))
    assert [(outcome.sample, outcome.scored) for outcome in outcomes] == [(batch[0].id, False), (batch[1].id, True)]


@pytest.mark.parametrize("tokens", [1, 2])
def test_a_written_token_is_read_back_by_the_next_row_only(tmp_path, tokens):
    """On consuming rows a token is read by the row after it, and the last token written has none: the demo model
    writes its key's first digits and is stopped there, after one (no row to score) or two (one row)."""
    adapter = load_adapter(BUNDLED_MODEL)
    install(adapter.model)
    [sample] = generate("passkey", tmp_path / "data", n=1, seed=1, modality="text", lengths=(160,), digits=5,
                        intro=False, progress=False)  # fmt: skip
    table = RETRIEVAL.table_for(adapter)
    options = scoring_options(row="consuming", max_new_tokens=tokens)
    [outcome] = score_retrieval_batch(adapter, [sample], options, table)
    assert (outcome.written, outcome.c) == (sample.answer[:tokens], tokens / 5)
    reason = "no row to score" if tokens == 1 else ""
    assert (outcome.scored, outcome.entries, outcome.reason) == (tokens > 1, tokens - 1, reason)
    assert len(table.arrays()["sample"]) == (tokens - 1) * adapter.grid[0] * adapter.grid[1]


def test_a_template_that_changes_the_context_is_refused_by_sample(texts):
    adapter = _rewriting_questions(tiny_adapter("qwen2_vl"), lambda question: question.replace("pass key", "PASS KEY"))
    install(adapter.model)
    with pytest.raises(OcrHeadsError, match=f"sample {texts[0].id}: the chat template changed the context text"):
        score_retrieval_batch(adapter, texts, scoring_options(answers="gold"), EntryTable(range(2), 4))


def test_a_retrieval_heads_list_holds_one_sum_per_sample_and_an_ocr_heads_one_value_per_entry():
    """A sample's retrieval score is its hits over its needle's tokens (Wu et al.), so a head's list holds each
    sample's entries summed, in the order the samples were scored; an OCR head's holds every entry."""
    columns = {"sample": np.repeat(["b", "a", "b"], 2), "value": np.array([0.25, 0.0, 0.5, 0.5, 0.25, 0.0])}
    retrieval = RETRIEVAL.head_scores(columns, (1, 2), [0]).lists
    assert retrieval[Head(0, 0)].tolist() == [0.5, 0.5] and retrieval[Head(0, 1)].tolist() == [0.0, 0.5]
    assert OCR.head_scores(columns, (1, 2), [0]).lists[Head(0, 0)].tolist() == [0.25, 0.5, 0.25]
