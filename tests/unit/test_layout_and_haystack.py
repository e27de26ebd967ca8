import json
import random

import pytest

from ocrheads.data.haystack import FakerText, insert_at_boundary, open_text_source, split_sentences
from ocrheads.data.layout import prose_runs, wrap_offsets
from ocrheads.errors import DataError


def test_wrapped_lines_keep_their_offsets():
    text = "alpha beta gamma delta\n\nepsilon zeta eta theta iota kappa-lambda supercalifragilistic"
    lines = wrap_offsets(text, 10)
    pieces = [text[start:end] for start, end in lines]
    assert all(len(piece) <= 10 for piece in pieces)
    assert pieces[:3] == ["alpha beta", "gamma", "delta"]
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "").replace("\n", "")
    assert [start for start, _ in lines] == sorted(start for start, _ in lines)


def test_prose_runs_fill_pages_in_reading_order():
    runs = prose_runs("one two three four five six seven", wrap_width=5, lines_per_page=3, margin=7)
    assert [(run.page, run.line) for run in runs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]
    assert [run.text for run in runs] == ["one", "two", "three", "four", "five", "six", "seven"]
    assert {run.x for run in runs} == {7}


@pytest.mark.parametrize(
    ("depth", "expected"),
    # Boundaries of "A b. C d. E f." sit at characters 0, 5, 10 and 15 (the end).
    [(0.0, "N. A b. C d. E f."), (0.5, "A b. N. C d. E f."), (0.7, "A b. C d. N. E f."), (1.0, "A b. C d. E f. N.")],
)
def test_needle_goes_in_at_a_sentence_boundary(depth, expected):
    inserted = insert_at_boundary(["A b.", "C d.", "E f."], "N.", depth)
    assert inserted.text == expected
    assert inserted.text[inserted.needle_start : inserted.needle_start + 2] == "N."


def test_empty_haystack_is_refused(tmp_path):
    with pytest.raises(DataError, match="empty"):
        insert_at_boundary([], "N.", 0.5)
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(DataError, match="holds no text"):
        open_text_source(str(empty))


def test_faker_text_is_seeded_and_long_enough():
    source = FakerText()
    first = source.sentences(random.Random(3), 500)
    assert first == FakerText().sentences(random.Random(3), 500)
    assert len(" ".join(first)) >= 500
    assert first != source.sentences(random.Random(4), 500)


def test_corpus_sources_from_text_jsonl_and_dataset_folder(tmp_path):
    essay = "First idea. Second idea!\nThird   idea? Fourth idea."
    (tmp_path / "essays.txt").write_text(essay)
    (tmp_path / "essays.jsonl").write_text(json.dumps({"text": essay}) + "\n")
    folder = tmp_path / "hub_like"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"text": essay}) + "\n")
    for spec in (str(tmp_path / "essays.txt"), str(tmp_path / "essays.jsonl"), f"hf:{folder}"):
        source = open_text_source(spec)
        assert source.corpus == ["First idea.", "Second idea!", "Third idea?", "Fourth idea."]
        sentences = source.sentences(random.Random(0), 40)
        assert len(" ".join(sentences)) >= 40
        assert all(sentence in source.corpus for sentence in sentences)


def test_bad_text_sources_are_named(tmp_path):
    with pytest.raises(DataError, match="neither"):
        open_text_source(str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: expected a JSON object with a 'text' field"):
        open_text_source(str(bad))


def test_split_sentences_normalises_whitespace():
    assert split_sentences("A  b.\n\nC\td? E") == ["A b.", "C d?", "E"]
