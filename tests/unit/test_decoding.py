"""How a run decodes: stop tokens and the repetition penalty resolved against a checkpoint's generation config."""

import re

import pytest
from transformers import GenerationConfig

from ocrheads.errors import OcrHeadsError
from ocrheads.models.decoding import check_decoding, parse_stop_tokens, resolve_decoding


@pytest.mark.parametrize(
    ("eos", "alone", "with_more"), [(7, (7,), (7, 281)), ([7, 3], (7, 3), (7, 3, 281)), (None, (), (281, 7))]
)
def test_eos_stands_for_the_checkpoint_s_end_of_sequence_ids(eos, alone, with_more):
    config = GenerationConfig(eos_token_id=eos)
    assert resolve_decoding({}, config).stop_tokens == alone
    assert resolve_decoding({"stop_tokens": ["eos", 281, 7]}, config).stop_tokens == with_more  # each id once
    assert resolve_decoding({"stop_tokens": [281]}, config).stop_tokens == (281,)


def test_the_penalty_is_the_request_s_else_the_checkpoint_s_else_none():
    published = GenerationConfig(eos_token_id=2, do_sample=True, top_k=1, temperature=0.1, repetition_penalty=1.05)
    assert resolve_decoding({}, published).repetition_penalty == 1.05
    assert resolve_decoding({"repetition_penalty": 1}, published).repetition_penalty == 1.0
    assert resolve_decoding({}, GenerationConfig(eos_token_id=2)).repetition_penalty == 1.0
    assert resolve_decoding({}, published).settings() == {"stop_tokens": [2], "repetition_penalty": 1.05}


def test_other_settings_that_change_greedy_decoding_are_recorded_and_sampling_ones_are_not():
    config = GenerationConfig(eos_token_id=2, no_repeat_ngram_size=3, suppress_tokens=[5, 6], top_p=0.5, min_length=0)
    assert resolve_decoding({}, config).settings()["checkpoint_settings"] == {
        "no_repeat_ngram_size": 3,
        "suppress_tokens": [5, 6],
    }
    biased = GenerationConfig(eos_token_id=2, sequence_bias={(4, 5): -1.0})
    assert resolve_decoding({}, biased).settings()["checkpoint_settings"] == {"sequence_bias": "{(4, 5): -1.0}"}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"stop_tokens": []}, "needs at least one token id"),
        ({"stop_tokens": ["end"]}, "takes token ids and 'eos', got 'end'"),
        ({"stop_tokens": [-1]}, "got -1"),
        ({"stop_tokens": [True]}, "got True"),
        ({"stop_tokens": [100]}, "outside the model's vocabulary of 100 ids"),
        ({"repetition_penalty": 0}, "a number above 0"),
        ({"repetition_penalty": "high"}, "a number above 0"),
        ({"temperature": 0.1}, "unknown decoding setting(s) temperature"),
    ],
)
def test_bad_requests_are_refused_by_name(request_, message):
    with pytest.raises(OcrHeadsError, match=re.escape(message)):
        check_decoding(request_, vocab_size=100)


def test_command_line_stop_tokens():
    assert parse_stop_tokens(None) is None
    assert parse_stop_tokens(["eos", "281"]) == ["eos", 281]
    with pytest.raises(OcrHeadsError, match=r"got '2\.5'"):
        parse_stop_tokens(["2.5"])
