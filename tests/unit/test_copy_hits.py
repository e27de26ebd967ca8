"""The copy-paste criterion on hand-made ids: the needle restriction and the repeated-token variant."""

import torch

from ocrheads.scoring.retrieval import copy_hits

#                  0  1  2  3  4  5  6  7   positions
IDS = torch.tensor([9, 5, 7, 5, 8, 5, 7, 5])  # needle: positions 3..4 ("5 8"); the answer is written at 7
NEEDLE = torch.tensor([3, 4])


def test_needle_hits_need_the_written_token_inside_the_needle():
    argmax = torch.tensor([[3, 1, 4, 5], [7, 8, 3, 2]])  # (layers, heads) top keys for the row writing position 7
    hits = copy_hits(IDS, argmax, target=7, needle=NEEDLE)
    # key 3: token 5 in the needle -> hit; key 1: token 5 outside -> miss; key 4: in the needle but token 8 -> miss;
    # key 7: the token itself, outside the needle -> miss; key 8: padding room -> miss
    assert hits.tolist() == [[True, False, False, False], [False, False, True, False]]


def test_repeats_count_the_same_token_anywhere():
    argmax = torch.tensor([[3, 1, 4, 5], [7, 8, 3, 2]])  # key 8, just past the ids, holds no token
    hits = copy_hits(IDS, argmax, target=7, needle=None)
    assert hits.tolist() == [[True, True, False, True], [True, False, True, False]]
