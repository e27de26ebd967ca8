"""The evaluation loaders on small files written here in each real format, and their refusals."""

import io
import json
import re

import datasets
import pytest
from PIL import Image

from ocrheads.errors import BadPage, DataError
from ocrheads.eval.datasets import load_eval_set
from ocrheads.eval.prompts import final_answer, question_text


def _page(colour: str) -> Image.Image:
    return Image.new("RGB", (32, 24), colour)


def _parquet(path, columns: dict, features: dict) -> str:
    datasets.Dataset.from_dict(columns, features=datasets.Features(features)).to_parquet(str(path))
    return str(path)


def test_docvqa_parquet_in_lmms_lab_layout(tmp_path):
    source = _parquet(
        tmp_path / "docvqa.parquet",
        {"questionId": ["q1", "q2"], "question": ["What total?", "Who?"], "answers": [["$5", "5"], ["Ann"]],
         "image": [_page("white"), _page("gray")]},
        {"questionId": datasets.Value("string"), "question": datasets.Value("string"),
         "answers": datasets.Sequence(datasets.Value("string")), "image": datasets.Image()},
    )  # fmt: skip
    found = load_eval_set(f"docvqa={source}")
    assert (found.name, found.modality, found.size, found.metrics) == ("docvqa", "image", 2, ("anls", "em", "f1"))
    sample = found.read(0)
    assert sample.id == "q1" and sample.answers == ("$5", "5") and sample.images[0].size == (32, 24)
    assert "single word or phrase" in question_text(sample, "direct", found.instruction)
    assert load_eval_set(f"docvqa={source}", limit=1).size == 1


def test_a_docvqa_record_whose_image_cannot_be_decoded_is_skipped_with_why_or_stops(tmp_path):
    good = io.BytesIO()
    _page("white").save(good, format="PNG")
    truncated = {"bytes": good.getvalue()[:60], "path": None}
    source = _parquet(
        tmp_path / "docvqa.parquet",
        {"questionId": ["q1", "q2", "q3"], "question": ["A?", "B?", "C?"], "answers": [["a"], ["b"], ["c"]],
         "image": [_page("white"), truncated, {"bytes": b"not an image", "path": None}]},
        {"questionId": datasets.Value("string"), "question": datasets.Value("string"),
         "answers": datasets.Sequence(datasets.Value("string")), "image": datasets.Image()},
    )  # fmt: skip
    found = load_eval_set(f"docvqa={source}")
    first, second, third = found.samples(range(3))
    assert (first.id, first.skip, first.images[0].size) == ("q1", "", (32, 24))
    for sample, name in ((second, "q2"), (third, "q3")):
        assert sample.id == name and sample.images == ()
        assert sample.skip.startswith(f"unreadable page (record {int(name[1]) - 1} of {source}: ")
    with pytest.raises(BadPage, match="sample q2: cannot read page record 1 of"):
        found.samples(range(3), stop_at_bad_page=True)


def _mp_docvqa(tmp_path, page_index: int, pages: int) -> str:
    columns = {"questionId": ["m1"], "question": ["Which year?"], "answers": ["['1999', 'in 1999']"],
               "answer_page_idx": [page_index]}  # fmt: skip
    features = {"questionId": datasets.Value("string"), "question": datasets.Value("string"),
                "answers": datasets.Value("string"), "answer_page_idx": datasets.Value("int64")}  # fmt: skip
    for n in range(1, 21):
        columns[f"image_{n}"] = [_page("white") if n <= pages else None]
        features[f"image_{n}"] = datasets.Image()
    return _parquet(tmp_path / f"mp{page_index}.parquet", columns, features)


def test_mp_docvqa_reads_every_page_and_parses_string_answers(tmp_path):
    found = load_eval_set(f"mp_docvqa={_mp_docvqa(tmp_path, 2, pages=3)}")
    sample = found.read(0)
    assert len(sample.images) == 3 and sample.answers == ("1999", "in 1999") and not sample.skip
    many = load_eval_set(f"mp_docvqa={_mp_docvqa(tmp_path, 0, pages=12)}", max_pages=8).read(0)
    assert many.skip == "12 pages, more than --max-pages 8" and many.images == ()


def test_mp_docvqa_page_index_beyond_the_document_is_refused_at_load(tmp_path):
    with pytest.raises(DataError, match="record 0: answer_page_idx 3 is beyond its 2 page"):
        load_eval_set(f"mp_docvqa={_mp_docvqa(tmp_path, 3, pages=2)}")


def _nq(tmp_path, drop: str = "") -> str:
    records = [
        {"question": f"q{i}", "answers": [f"a{i}"],
         "positive_ctxs": [{"title": "T", "text": f"gold {i}", "title_score": 1},
                           {"title": "U", "text": f"near {i}", "title_score": 0}],
         "negative_ctxs": [{"title": "N", "text": f"neg {i}.{j}"} for j in range(8)]}
        for i in range(3)
    ]  # fmt: skip
    if drop:
        del records[1][drop]
    path = tmp_path / "nq.json"
    path.write_text(json.dumps(records))
    return str(path)


def test_nq_evidence_is_the_titled_positives_and_five_negatives_seeded_per_sample(tmp_path):
    source = _nq(tmp_path)
    sample = load_eval_set(f"nq={source}").read(1)
    passages = [line.split(": ", 1)[1] for line in sample.context.splitlines()]
    assert len(passages) == 6 and "gold 1" in passages and "near 1" not in passages
    assert sum(p.startswith("neg 1.") for p in passages) == 5
    assert load_eval_set(f"nq={source}").read(1) == sample  # same seed, same evidence
    assert load_eval_set(f"nq={source}", seed=7).read(1).context != sample.context
    assert question_text(sample, "direct", "").startswith("Evidence 1: ")


def test_missing_fields_name_the_record(tmp_path):
    with pytest.raises(DataError, match=re.escape("record 1 lacks the field(s) negative_ctxs")):
        load_eval_set(f"nq={_nq(tmp_path, drop='negative_ctxs')}")
    with pytest.raises(DataError, match=re.escape("unknown dataset 'squad=x.json'")):
        load_eval_set("squad=x.json")


def test_hotpotqa_supporting_paragraphs_plus_distractors_of_other_questions(tmp_path):
    records = [
        {"_id": f"h{i}", "question": f"q{i}", "answer": f"a{i}", "supporting_facts": [[f"S{i}", 0]],
         "context": [[f"S{i}", [f"support {i}. ", "more."]], [f"D{i}", [f"distractor {i}."]]]}
        for i in range(4)
    ]  # fmt: skip
    path = tmp_path / "hotpot.json"
    path.write_text(json.dumps(records))
    sample = load_eval_set(f"hotpotqa={path}").read(0)
    passages = [line.split(": ", 1)[1] for line in sample.context.splitlines()]
    assert "support 0. more." in passages and "distractor 0." not in passages
    assert 2 <= len(passages) <= 6 and sample.answers == ("a0",)
    assert all(p.endswith(("more.", ".")) and " 0" not in p for p in passages if p != "support 0. more.")


def test_cot_replies_are_parsed_down_to_the_final_answer():
    reply = "The key is on line 3.\nIt reads 4 2 7.\nAnswer: 427"
    assert final_answer(reply, "cot") == "427"
    assert final_answer("line 3 says\n427", "cot") == "427"
    assert final_answer(" 427 \n", "direct") == "427"
