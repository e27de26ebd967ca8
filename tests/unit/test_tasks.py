import json
import re

import pytest

from ocrheads.data.docs import KINDS, docs_contents
from ocrheads.data.fonts import load_font
from ocrheads.data.haystack import FakerText
from ocrheads.data.niah import niah_contents, read_needles
from ocrheads.data.passkey import INTRO, NEEDLE, chars_contents, passkey_contents
from ocrheads.data.render import GlyphAtlas
from ocrheads.data.samples import Content
from ocrheads.errors import DataError


def _answer_at_offset(content: Content) -> str:
    return content.context[content.answer_start : content.answer_start + len(content.answer)]


def test_passkeys_are_length_major_and_occur_once():
    contents = list(passkey_contents(8, FakerText(), seed=1, lengths=(1024, 4096), digits=6))
    assert [c.meta["context_length"] for c in contents] == [1024] * 4 + [4096] * 4
    for content in contents:
        assert re.fullmatch(r"[1-9]\d{5}", content.answer)
        assert _answer_at_offset(content) == content.answer
        assert content.context.count(content.answer) == 1
        assert NEEDLE.format(key=content.answer) in content.context
        assert len(content.context) > content.meta["context_length"]


def test_passkeys_without_the_intro_are_the_same_haystack_and_key_without_the_soft_prompt():
    with_intro = list(passkey_contents(3, FakerText(), seed=2, lengths=(300,)))
    without = list(passkey_contents(3, FakerText(), seed=2, lengths=(300,), intro=False))
    for full, bare in zip(with_intro, without, strict=True):
        assert full.context.startswith(INTRO + " ") and INTRO not in bare.context
        assert full.context == INTRO + " " + bare.context and full.answer == bare.answer
        assert _answer_at_offset(bare) == bare.answer


def test_a_sample_does_not_depend_on_how_many_are_drawn():
    few = list(passkey_contents(2, FakerText(), seed=5, lengths=(1024,)))
    many = list(passkey_contents(6, FakerText(), seed=5, lengths=(1024,)))
    assert few == many[:2]
    assert list(passkey_contents(2, FakerText(), seed=6, lengths=(1024,))) != few


def test_case_study_is_character_major():
    contents = list(chars_contents(2, FakerText(), alphabet="a7z", length=300))
    assert [c.answer for c in contents] == ["a", "a", "7", "7", "z", "z"]
    assert all(_answer_at_offset(c) == c.answer for c in contents)
    with pytest.raises(DataError, match="alphabet"):
        list(chars_contents(1, FakerText(), alphabet="a a"))


def test_niah_is_needle_major_with_the_answer_inside_the_needle():
    contents = list(niah_contents(6, FakerText(), lengths=(1024, 2048, 4096)))
    assert [c.meta["needle"] for c in contents] == [0, 0, 0, 1, 1, 1]
    assert [c.meta["context_length"] for c in contents] == [1024, 2048, 4096] * 2
    assert contents[0].answer == contents[1].answer and contents[0].question == contents[2].question
    for content in contents:
        assert _answer_at_offset(content) == content.answer


def test_user_needles_must_contain_their_answer(tmp_path):
    good = tmp_path / "needles.jsonl"
    good.write_text(
        json.dumps({"needle": "Ada hid the map in Lisbon.", "question": "Where?", "answer": "Lisbon"}) + "\n"
    )
    assert read_needles(good)[0].answer == "Lisbon"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"needle": "Ada hid the map in Lisbon.", "question": "Where?", "answer": "Porto"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: the answer 'Porto' does not occur in the needle"):
        read_needles(bad)


def test_content_refuses_an_answer_that_is_not_at_its_offset():
    with pytest.raises(DataError, match="sample x-1: the answer 'cat' does not occur"):
        Content("x-1", "t", "q?", "cat", "a dog sat", 2)


def test_documents_ask_about_one_cell_of_every_kind():
    atlas = GlyphAtlas(load_font("dejavu-sans", 14))
    contents = list(docs_contents(8, atlas, margin=10, seed=2))
    assert {c.meta["kind"] for c in contents} == set(KINDS)
    for content in contents:
        assert _answer_at_offset(content) == content.answer
        cell_runs = [run for run in content.runs if run.start == content.answer_start]
        assert len(cell_runs) == 1 and cell_runs[0].text == content.answer
        assert content.question.endswith("?")
