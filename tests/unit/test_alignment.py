from ocrheads.scoring.alignment import AnswerToken, align_by_offsets, align_by_position


def _prefixes(pieces):
    return ["".join(pieces[: n + 1]) for n in range(len(pieces))]


def test_offsets_pair_each_token_with_the_answer_characters_it_writes():
    tokens, c = align_by_offsets("4721", _prefixes(["The", " key", " is", " 4", "7", "21", "."]))
    assert c == 1.0
    assert tokens == [AnswerToken(3, (0,)), AnswerToken(4, (1,)), AnswerToken(5, (2, 3))]


def test_a_partly_written_answer_aligns_its_longest_common_run_and_scales_c():
    tokens, c = align_by_offsets("4721", _prefixes(["9", "7", "2", "x"]))
    assert c == 0.5
    assert tokens == [AnswerToken(1, (1,)), AnswerToken(2, (2,))]
    assert align_by_offsets("4721", _prefixes(["no"])) == ([], 0.0)


def test_position_pairing_follows_the_paper_code_including_its_quirks():
    # answer ids 4,7,2,1; the written 7 before the answer shifts the pairing (METHOD.md 2.3)
    tokens, c = align_by_position([4, 7, 2, 1], [7, 0, 4, 7, 2, 1], units=4)
    assert [t.index for t in tokens] == [0, 2, 3, 4] and [t.units for t in tokens] == [(0,), (1,), (2,), (3,)]
    assert c == 1.0
    assert align_by_position([4, 7], [4, 9], units=2)[1] == 0.5
