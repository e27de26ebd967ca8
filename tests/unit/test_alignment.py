from ocrheads.scoring.alignment import AnswerToken, align_by_offsets, align_by_position, longest_common_run, token_spans


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


def test_an_answer_after_text_keeps_its_last_characters():
    """The answer starts at character 9 and is 5 long: its end is 9 + 5 = 14 (not 9 | 5 = 13, nor 9 ^ 5 = 12)."""
    tokens, c = align_by_offsets("12345", _prefixes(["The key: ", "1", "23", "45", "."]))
    assert c == 1.0
    assert tokens == [AnswerToken(1, (0,)), AnswerToken(2, (1, 2)), AnswerToken(3, (3, 4))]


def test_an_answer_at_the_very_start_keeps_its_first_character():
    tokens, _ = align_by_offsets("12345", _prefixes(["12", "345", " is it"]))
    assert tokens == [AnswerToken(0, (0, 1)), AnswerToken(1, (2, 3, 4))]


def test_token_spans_start_at_zero_and_follow_the_prefixes():
    assert token_spans(["ab", "abc", "abc", "abcdef"]) == [(0, 2), (2, 3), (3, 3), (3, 6)]


def test_the_longest_common_run_never_wraps_around_either_sequence():
    """A run may not continue from the last element to the first: "bcd" against "cdxb" shares "cd" (2), not "bcd"."""
    assert longest_common_run("bcd", "cdxb") == (1, 0, 2)
    assert longest_common_run("cdxb", "bcd") == (0, 1, 2)


def test_a_repetitive_written_text_still_aligns_its_longest_run():
    """In 250 characters with "12345 " repeated, every digit is frequent: difflib's automatic junk heuristic would
    drop them all and find no run; the answer's longest run, "1234" from character 10, is 4 of its 5 characters."""
    written = "The keys: " + "12345 " * 40
    tokens, c = align_by_offsets("12346", _prefixes([written[:12], written[12:]]))
    assert c == 0.8 and tokens == [AnswerToken(0, (0, 1)), AnswerToken(1, (2, 3))]
