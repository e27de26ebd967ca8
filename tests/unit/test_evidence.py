import torch

from ocrheads.data.manifest import CharBox, Sample, WordBox
from ocrheads.geometry import ImageTokens, Tile
from ocrheads.scoring.evidence import answer_units, evidence
from ocrheads.scoring.options import scoring_options


def test_atoms_split_shared_tokens_so_unions_and_hits_are_exact():
    # one 2x4 token grid over a 40x20 page; each token sees a 10x10 cell
    image = ImageTokens(0, (40, 20), (Tile(100, 2, 4, (0, 0, 40, 20)),))
    units = [(0, (2, 2, 8, 8)), (0, (8, 2, 18, 8)), None, (0, (31, 12, 39, 19))]  # unit 1 straddles two cells
    found = evidence(units, [image], scoring_options())
    assert dict(zip(found.atoms, found.positions, strict=True)) == {
        frozenset({0, 1}): (100,),
        frozenset({1}): (101,),
        frozenset({3}): (107,),
    }
    keys = torch.tensor([[100, 101, 107, 5]])
    assert found.hits(keys, (0,), 110).tolist() == [[True, False, False, False]]
    assert found.hits(keys, (1,), 110).tolist() == [[True, True, False, False]]
    assert found.hits(keys, (2,), 110).tolist() == [[False, False, False, False]]
    assert found.hits(keys, (3,), 110).tolist() == [[False, False, True, False]]  # key 5 sees nothing, not atom -2
    assert found.touching((1, 3)).tolist() == [True, True, True]


def _sample(answer: str) -> Sample:
    """An answer laid out by hand: each character 10 px wide from x = 20 on page 1, words where spaces split them."""
    chars = [CharBox(char=c, offset=i, page=1, box=None if c == " " else (20 + 10 * i, 5, 30 + 10 * i, 25))
             for i, c in enumerate(answer)]  # fmt: skip
    words, start = [], 0
    for word in answer.split(" "):
        box = (20 + 10 * start, 5, 20 + 10 * (start + len(word)), 25)
        words.append(WordBox(word=word, offset=start, page=1, box=box))
        start += len(word) + 1
    return Sample(id="s", task="docs", modality="image", question="?", answer=answer, context=answer,
                  answer_span=(0, len(answer)), answer_chars=chars, answer_words=words, pages=["p0.png", "p1.png"],
                  page_sizes=[(100, 30), (100, 30)])  # fmt: skip


def test_answer_units_are_characters_unless_the_paper_pairing_meets_several_words():
    two_words = _sample("ab c")
    by_char = answer_units(two_words, scoring_options(alignment="offsets"))
    assert by_char == [(1, (20, 5, 30, 25)), (1, (30, 5, 40, 25)), None, (1, (50, 5, 60, 25))]  # the blank: no ink
    by_word = answer_units(two_words, scoring_options(alignment="position"))
    assert by_word == [(1, (20, 5, 40, 25)), (1, (50, 5, 60, 25))]
    one_word = _sample("abc")
    assert answer_units(one_word, scoring_options(alignment="position")) == [(1, (20, 5, 30, 25)), (1, (30, 5, 40, 25)),
                                                                               (1, (40, 5, 50, 25))]  # fmt: skip
    blank = Sample(id="b", task="docs", modality="image", question="?", answer=" ", context="a b", answer_span=(1, 2),
                   answer_chars=[CharBox(char=" ", offset=1, page=0, box=None)], pages=["p0.png"],
                   page_sizes=[(100, 30)])  # fmt: skip
    assert answer_units(blank, scoring_options(alignment="position")) == [None]  # no word: its one character, no ink
