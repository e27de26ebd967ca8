"""Needle in a haystack: a fact sentence at a sentence boundary of filler text, asked about afterwards.

Needles come from seeded Faker templates (offline), or from a user's JSONL file with `needle`, `question`
and `answer` fields (e.g. NeedleBench's `needle`, `retrieval_question`, `arg2`). Samples are needle-major,
like the paper: needle 0 at every length, then needle 1, ...
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from faker import Faker

from ocrheads.data.haystack import TextSource, insert_at_boundary
from ocrheads.data.passkey import DEFAULT_LENGTHS, sample_rng
from ocrheads.data.samples import Content
from ocrheads.errors import DataError


@dataclass(frozen=True)
class Needle:
    needle: str
    question: str
    answer: str


def _template_needles() -> list[Callable[[Faker], Needle]]:
    def born(fake: Faker) -> Needle:
        name, city = fake.first_name(), fake.city()
        return Needle(f"{name} was born in the town of {city}.", f"Where was {name} born?", city)

    def colour(fake: Faker) -> Needle:
        name, colour = fake.first_name(), fake.color_name()
        question = f"What is the favourite colour of {name}?"
        return Needle(f"The favourite colour of {name} is {colour}.", question, colour)

    def code(fake: Faker) -> Needle:
        vault, code = fake.word(), fake.bothify("??-####").upper()
        return Needle(f"The code of the {vault} vault is {code}.", f"What is the code of the {vault} vault?", code)

    def employer(fake: Faker) -> Needle:
        name, company = fake.name(), fake.company()
        return Needle(f"{name} works for {company}.", f"Which company does {name} work for?", company)

    def street(fake: Faker) -> Needle:
        name, street = fake.first_name(), fake.street_name()
        question = f"Where is the secret meeting with {name}?"
        return Needle(f"The secret meeting with {name} is on {street}.", question, street)

    return [born, colour, code, employer, street]


TEMPLATES = _template_needles()


def read_needles(path: str | Path) -> list[Needle]:
    """A JSONL file of {needle, question, answer}; the answer must occur verbatim in the needle."""
    needles = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read needles file {path} ({err})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            needle = Needle(str(record["needle"]), str(record["question"]), str(record["answer"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{path}:{number}: expected a JSON object with needle, question and answer") from None
        if not needle.answer or needle.answer not in needle.needle:
            raise DataError(
                f"{path}:{number}: the answer {needle.answer!r} does not occur in the needle {needle.needle!r}; "
                "fix the answer so that it is a verbatim span of the needle"
            )
        needles.append(needle)
    if not needles:
        raise DataError(f"needles file {path} is empty")
    return needles


def niah_contents(
    n: int,
    source: TextSource,
    *,
    seed: int = 0,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    needles: Sequence[Needle] | None = None,
) -> Iterator[Content]:
    if n < 1 or not lengths or min(lengths) < 1:
        raise DataError("niah needs --n >= 1 and at least one positive --lengths value")
    fake = Faker("en_US")
    for index in range(n):
        needle_index, length_index = divmod(index, len(lengths))
        needle_rng = random.Random(f"{seed}:niah-needle:{needle_index}")
        if needles:
            needle = needles[needle_index % len(needles)]
        else:
            fake.seed_instance(needle_rng.getrandbits(64))
            needle = needle_rng.choice(TEMPLATES)(fake)
        rng = sample_rng(seed, "niah", index)
        depth = rng.random()
        haystack = insert_at_boundary(source.sentences(rng, lengths[length_index]), needle.needle, depth)
        yield Content(
            id=f"niah-{index:05d}",
            task="niah",
            question=needle.question,
            answer=needle.answer,
            context=haystack.text,
            answer_start=haystack.needle_start + needle.needle.index(needle.answer),
            meta={
                "context_length": lengths[length_index],
                "depth": round(depth, 6),
                "needle": needle_index,
                "text_source": source.name,
            },
        )
