"""Random-head arms: reproducible from the seed, never a head twice, exclusions and layer matching honoured."""

import pytest

from ocrheads.errors import OcrHeadsError
from ocrheads.eval.conditions import Condition, random_heads
from ocrheads.heads import Head


def test_random_heads_are_distinct_reproducible_and_seed_dependent():
    draws = [random_heads((4, 8), 12, seed) for seed in range(5)]
    assert all(len(set(heads)) == 12 for heads in draws)
    assert random_heads((4, 8), 12, 3) == draws[3]
    assert len(set(draws)) == 5
    assert all(0 <= h.layer < 4 and 0 <= h.head < 8 for heads in draws for h in heads)


def test_exclusions_and_layer_matching():
    top = [Head(1, 0), Head(1, 5), Head(3, 2)]
    heads = random_heads((4, 8), 3, 0, exclude=top, like=top)
    assert sorted(h.layer for h in heads) == [1, 1, 3] and not set(heads) & set(top)
    everything_but_one = [Head(layer, h) for layer in range(2) for h in range(2)][1:]
    assert random_heads((2, 2), 1, 9, exclude=everything_but_one) == (Head(0, 0),)
    with pytest.raises(OcrHeadsError, match="k=2 random heads asked for, but only 1"):
        random_heads((2, 2), 2, 0, exclude=everything_but_one)
    with pytest.raises(OcrHeadsError, match="layer 0: 3 heads to match, but only 2"):
        random_heads((2, 2), 3, 0, like=[Head(0, 0), Head(0, 1), Head(0, 0)])


def test_head_map_groups_heads_by_layer():
    condition = Condition("x", "ocr", (Head(2, 3), Head(0, 1), Head(2, 0)))
    assert condition.head_map() == {0: (1,), 2: (0, 3)}
