"""Evaluation sets: DocVQA, MP-DocVQA, NQ, HotpotQA and our own synthetic sets, each read from a local file or
folder (or a hub id where the hub is reachable) into one sample type.

Text QA evidence is built as in the paper (METHOD.md 1.4), seeded per sample so a sample's passages do not
depend on which other samples are run: NQ takes the positive passages with title_score 1 plus 5 negatives,
HotpotQA the supporting paragraphs plus 1-5 paragraphs of other questions; both are shuffled.
"""

from __future__ import annotations

import ast
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ocrheads.data.manifest import MANIFEST, open_page, read_manifest
from ocrheads.errors import BadPage, DataError

NQ_NEGATIVES = 5
SHORT_ANSWER = "Answer the question using a single word or phrase."  # lmms-eval's instruction for real sets
MP_DOCVQA_PAGES = 20


@dataclass(frozen=True)
class EvalSample:
    id: str
    question: str
    answers: tuple[str, ...]
    images: tuple[Image.Image, ...] = ()  # image samples: the pages, in order
    context: str = ""  # text samples: the evidence, prepended to the question
    skip: str = ""  # why the sample cannot be run (kept, so it is counted rather than dropped)


@dataclass
class EvalSet:
    """A named evaluation set: its size, its metrics, and its samples by index (read on demand)."""

    name: str
    modality: str  # image or text
    metrics: tuple[str, ...]
    size: int
    read: Callable[[int], EvalSample] = field(repr=False)
    source: str = ""  # the file, folder or hub id it was read from
    instruction: str = SHORT_ANSWER  # added to direct prompts; empty for our synthetic sets

    def samples(self, indices: Sequence[int], stop_at_bad_page: bool = False) -> list[EvalSample]:
        """The samples at `indices`; one whose page cannot be read is kept with why as its `skip` (counted, not run),
        unless asked to stop at the first."""
        found = []
        for index in indices:
            try:
                found.append(self.read(index))
            except BadPage as err:
                if stop_at_bad_page:
                    raise
                found.append(EvalSample(err.sample, "", (), skip=err.reason))
        return found


def _decoded(table, index: int, columns: Sequence[str], source: str) -> tuple[dict, list[Image.Image]]:
    """Record `index` of a hub table and its pages (the image `columns` it fills) as RGB; a page that cannot be
    decoded is a BadPage named by the record's questionId."""
    try:
        row = table[index]
        return row, [row[column].convert("RGB") for column in columns if row[column] is not None]
    except (OSError, Image.DecompressionBombError) as err:
        ids = table.select_columns(["questionId"]) if "questionId" in table.column_names else None
        name = str(ids[index]["questionId"]) if ids is not None else str(index)
        raise BadPage(name, f"record {index} of {source}", str(err)) from None


def _require(record: dict, fields: Sequence[str], where: str) -> None:
    missing = [name for name in fields if name not in record]
    if missing:
        raise DataError(f"{where} lacks the field(s) {', '.join(missing)}; is it the right dataset format?")


def _hub_or_parquet(source: str, config: str | None, split: str):
    """A local parquet file or folder (lmms-lab's layout), else a hub id."""
    import datasets

    path = Path(source)
    if path.exists():
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{source} holds no .parquet files")
        return datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    try:
        return datasets.load_dataset(source, config, split=split)
    except Exception as err:  # the hub raises many types; all mean the same to a user
        raise DataError(f"cannot load {source!r}: not a local file, and the hub said: {err}") from None


def docvqa(source: str = "lmms-lab/DocVQA", limit: int | None = None) -> EvalSet:
    table = _hub_or_parquet(source, "DocVQA", "validation")
    _require({name: None for name in table.column_names}, ("question", "answers", "image"), source)

    def read(index: int) -> EvalSample:
        row, images = _decoded(table, index, ["image"], source)
        sample_id = str(row.get("questionId", index))
        return EvalSample(sample_id, row["question"], tuple(row["answers"]), images=tuple(images))

    return EvalSet("docvqa", "image", ("anls", "em", "f1"), _size(len(table), limit), read, source)


def mp_docvqa(source: str = "lmms-lab/MP-DocVQA", limit: int | None = None, max_pages: int = 8) -> EvalSet:
    import datasets

    table = _hub_or_parquet(source, None, "val")
    _require({name: None for name in table.column_names}, ("question", "answers", "answer_page_idx", "image_1"), source)
    columns = [f"image_{n}" for n in range(1, MP_DOCVQA_PAGES + 1) if f"image_{n}" in table.column_names]
    size = _size(len(table), limit)
    undecoded = table.select(range(size)).select_columns([*columns, "answer_page_idx"])
    for column in columns:
        undecoded = undecoded.cast_column(column, datasets.Image(decode=False))
    for index, row in enumerate(undecoded):  # every record is checked before anything runs
        pages = sum(row[column] is not None for column in columns)
        if not 0 <= int(row["answer_page_idx"]) < pages:
            raise DataError(
                f"{source}, record {index}: answer_page_idx {row['answer_page_idx']} is beyond its {pages} page(s); "
                "the record is corrupt"
            )

    def read(index: int) -> EvalSample:
        row, pages = _decoded(table, index, columns, source)
        sample_id = str(row.get("questionId", index))
        answers = row["answers"]
        answers = tuple(ast.literal_eval(answers) if isinstance(answers, str) else answers)
        skip = f"{len(pages)} pages, more than --max-pages {max_pages}" if len(pages) > max_pages else ""
        return EvalSample(sample_id, row["question"], answers, images=() if skip else tuple(pages), skip=skip)

    return EvalSet("mp_docvqa", "image", ("anls", "em", "f1"), size, read, source)


def _json_records(path: str, what: str, fields: Sequence[str]) -> list[dict]:
    """Every record of a JSON list, each checked for `fields` before anything runs."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read the {what} file {path}: {err}") from None
    if not isinstance(records, list) or not records:
        raise DataError(f"{path} must hold a JSON list of {what} records")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}, record {index} is not a JSON object")
        _require(record, fields, f"{path}, record {index}")
    return records


def _evidence(passages: list[str]) -> str:
    return "\n".join(f"Evidence {n}: {text}" for n, text in enumerate(passages, 1))


def nq(path: str, limit: int | None = None, seed: int = 1234) -> EvalSet:
    """Natural Questions, DPR's biencoder-nq-dev.json layout."""
    records = _json_records(path, "DPR NQ", ("question", "answers", "positive_ctxs", "negative_ctxs"))

    def read(index: int) -> EvalSample:
        record = records[index]
        rng = random.Random(f"{seed}:nq:{index}")
        positives = [c["text"] for c in record["positive_ctxs"] if c.get("title_score") == 1]
        negatives = [c["text"] for c in record["negative_ctxs"]]
        passages = positives + rng.sample(negatives, min(NQ_NEGATIVES, len(negatives)))
        rng.shuffle(passages)
        return EvalSample(f"nq-{index}", record["question"], tuple(record["answers"]), context=_evidence(passages))

    return EvalSet("nq", "text", ("em", "f1"), _size(len(records), limit), read, path)


def hotpotqa(path: str, limit: int | None = None, seed: int = 1234) -> EvalSet:
    """HotpotQA, the distractor dev JSON layout."""
    records = _json_records(path, "HotpotQA", ("_id", "question", "answer", "supporting_facts", "context"))

    def paragraphs(record: dict) -> list[tuple[str, str]]:
        return [(title, "".join(sentences)) for title, sentences in record["context"]]

    def read(index: int) -> EvalSample:
        record = records[index]
        rng = random.Random(f"{seed}:hotpotqa:{index}")
        titles = {title for title, _ in record["supporting_facts"]}
        passages = [text for title, text in paragraphs(record) if title in titles]
        others = [i for i in range(len(records)) if i != index]
        for other in rng.sample(others, min(rng.randint(1, 5), len(others))):
            passages.append(rng.choice(paragraphs(records[other]))[1])
        rng.shuffle(passages)
        return EvalSample(record["_id"], record["question"], (record["answer"],), context=_evidence(passages))

    return EvalSet("hotpotqa", "text", ("em", "f1"), _size(len(records), limit), read, path)


def synthetic(folder: str, limit: int | None = None) -> EvalSet:
    """One of our generated sets (passkey, niah, chars, docs), image or text, read from its manifest."""
    samples = read_manifest(folder)
    if not samples:
        raise DataError(f"{folder} holds no samples")
    modality = samples[0].modality
    metrics = ("anls", "em", "f1") if samples[0].task == "docs" else ("passkey", "em")

    def read(index: int) -> EvalSample:
        s = samples[index]
        if s.modality == "image":
            images = tuple(open_page(folder, s, page) for page in range(len(s.pages)))
            return EvalSample(s.id, s.question, (s.answer,), images=images)
        return EvalSample(s.id, s.question, (s.answer,), context=s.context)

    size = _size(len(samples), limit)
    return EvalSet(Path(folder).name, modality, metrics, size, read, str(folder), instruction="")


LOADERS = {"docvqa": docvqa, "mp_docvqa": mp_docvqa, "nq": nq, "hotpotqa": hotpotqa}


def load_eval_set(spec: str, limit: int | None = None, seed: int = 1234, max_pages: int = 8) -> EvalSet:
    """`docvqa`, `docvqa=PATH_OR_HUB_ID`, `nq=PATH`, ..., or the folder of a synthetic set (has a manifest)."""
    name, _, source = spec.partition("=")
    if not source and (Path(name) / MANIFEST).is_file():
        return synthetic(name, limit)
    if name not in LOADERS:
        known = ", ".join(LOADERS)
        raise DataError(f"unknown dataset {spec!r}; use {known} (as NAME or NAME=PATH) or a synthetic set's folder")
    if name == "docvqa":
        return docvqa(source or "lmms-lab/DocVQA", limit)
    if name == "mp_docvqa":
        return mp_docvqa(source or "lmms-lab/MP-DocVQA", limit, max_pages)
    if not source:
        raise DataError(f"{name} needs a local file: --dataset {name}=PATH")
    return LOADERS[name](source, limit, seed)


def _size(total: int, limit: int | None) -> int:
    return total if limit is None else min(total, limit)
