import torch

from ocrheads.models.geometry import ImageTokens, Tile
from ocrheads.scoring.evidence import evidence
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
    assert found.touching((1, 3)).tolist() == [True, True, True]
