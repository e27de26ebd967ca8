"""Synthetic one-page documents (forms, receipts, invoices, tables) with key/value questions.

An offline stand-in for DocVQA-style evaluation: the answer is one cell of a laid-out page, so its characters
have exact boxes like every other task. The plain-text context is the page read row by row, cells separated
by tabs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from faker import Faker

from ocrheads.data.passkey import sample_rng
from ocrheads.data.render import GlyphAtlas, Run
from ocrheads.data.samples import Content
from ocrheads.errors import DataError

COLUMN_GAP_EMS = 2


@dataclass(frozen=True)
class Document:
    kind: str
    rows: list[list[str]]
    questions: list[tuple[str, int, int]]  # question, row and column of the answer cell


def _money(rng: random.Random, low: float, high: float) -> str:
    return f"{rng.uniform(low, high):.2f}"


def _items(fake: Faker, count: int) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = fake.word().title()
        if name not in names:
            names.append(name)
    return names


def form(fake: Faker, rng: random.Random) -> Document:
    fields = [
        ("Name", fake.name()),
        ("Date of birth", fake.date_of_birth(minimum_age=18, maximum_age=90).isoformat()),
        ("Phone", fake.numerify("(###) ###-####")),
        ("Email", fake.email()),
        ("Employee ID", fake.bothify("EMP-#####")),
        ("Department", fake.job()),
        ("City", fake.city()),
    ]
    rows = [["Application Form"], *([f"{key}:", value] for key, value in fields)]
    questions = [(f"What is the {key.lower()}?", row, 1) for row, (key, _) in enumerate(fields, 1)]
    return Document("form", rows, questions)


def receipt(fake: Faker, rng: random.Random) -> Document:
    items = _items(fake, rng.randint(3, 6))
    prices = [_money(rng, 1, 60) for _ in items]
    subtotal = sum(map(float, prices))
    tax = round(subtotal * 0.08, 2)
    rows = [[fake.company()], [fake.street_address()], ["Date:", fake.date_this_decade().isoformat()]]
    rows += [["Item", "Price"], *([item, price] for item, price in zip(items, prices, strict=True))]
    rows += [["Subtotal", f"{subtotal:.2f}"], ["Tax", f"{tax:.2f}"], ["Total", f"{subtotal + tax:.2f}"]]
    questions = [("What is the date on the receipt?", 2, 1), ("What is the total?", len(rows) - 1, 1)]
    questions += [(f"What is the price of {item}?", 4 + index, 1) for index, item in enumerate(items)]
    return Document("receipt", rows, questions)


def invoice(fake: Faker, rng: random.Random) -> Document:
    items = _items(fake, rng.randint(2, 4))
    amounts = [_money(rng, 50, 2000) for _ in items]
    rows = [
        ["INVOICE"],
        ["Invoice number:", fake.bothify("INV-####")],
        ["Invoice date:", fake.date_this_year().isoformat()],
        ["Due date:", fake.date_this_year(before_today=False, after_today=True).isoformat()],
        ["Bill to:", fake.name()],
        ["Description", "Amount"],
        *([f"{item} services", amount] for item, amount in zip(items, amounts, strict=True)),
        ["Amount due:", f"{sum(map(float, amounts)):.2f}"],
    ]
    questions = [
        ("What is the invoice number?", 1, 1),
        ("What is the invoice date?", 2, 1),
        ("What is the due date?", 3, 1),
        ("Who is the invoice billed to?", 4, 1),
        ("What is the amount due?", len(rows) - 1, 1),
    ]
    return Document("invoice", rows, questions)


def table(fake: Faker, rng: random.Random) -> Document:
    columns = ["Q1", "Q2", "Q3", "Q4"]
    count = rng.randint(3, 6)
    regions: list[str] = []
    while len(regions) < count:
        city = fake.city()
        if city not in regions:
            regions.append(city)
    rows = [["Sales by region"], ["Region", *columns]]
    rows += [[region, *(str(rng.randint(100, 9999)) for _ in columns)] for region in regions]
    questions = [
        (f"What is the {column} value for {region}?", 2 + row, 1 + col)
        for row, region in enumerate(regions)
        for col, column in enumerate(columns)
    ]
    return Document("table", rows, questions)


KINDS: dict[str, Callable[[Faker, random.Random], Document]] = {
    "form": form,
    "receipt": receipt,
    "invoice": invoice,
    "table": table,
}


def _layout(document: Document, atlas: GlyphAtlas, margin: int) -> tuple[str, list[Run], dict[tuple[int, int], int]]:
    """Place cells in columns as wide as their widest cell; rows with one cell (titles) span the page."""
    gap = COLUMN_GAP_EMS * atlas.font.size
    widths: dict[int, float] = {}
    for row in document.rows:
        if len(row) > 1:
            for col, cell in enumerate(row):
                widths[col] = max(widths.get(col, 0.0), atlas.font.face.getlength(cell))
    runs, starts, lines = [], {}, []
    offset = 0
    for row_index, row in enumerate(document.rows):
        x = float(margin)
        for col, cell in enumerate(row):
            starts[(row_index, col)] = offset
            runs.append(Run(offset, cell, 0, row_index, round(x)))
            x += widths.get(col, 0.0) + gap
            offset += len(cell) + 1
        lines.append("\t".join(row))
    return "\n".join(lines), runs, starts


def docs_contents(
    n: int, atlas: GlyphAtlas, *, margin: int, seed: int = 0, kinds: Sequence[str] = tuple(KINDS)
) -> Iterator[Content]:
    unknown = sorted(set(kinds) - set(KINDS))
    if n < 1 or not kinds or unknown:
        raise DataError(f"docs needs --n >= 1 and --kinds from {', '.join(KINDS)} (unknown: {unknown})")
    fake = Faker("en_US")
    for index in range(n):
        rng = sample_rng(seed, "docs", index)
        fake.seed_instance(rng.getrandbits(64))
        kind = kinds[index % len(kinds)]
        document = KINDS[kind](fake, rng)
        question, row, col = rng.choice(document.questions)
        context, runs, starts = _layout(document, atlas, margin)
        yield Content(
            id=f"docs-{index:05d}",
            task="docs",
            question=question,
            answer=document.rows[row][col],
            context=context,
            answer_start=starts[(row, col)],
            meta={"kind": kind},
            runs=tuple(runs),
        )
