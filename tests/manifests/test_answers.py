"""Option letters and answer normalisation (`hfs.manifests.answers`), used by every reader and scorer."""

from __future__ import annotations

import pytest

from hfs.manifests.answers import letter_index, normalise_answer, option_letter, option_letters


def test_letters_and_indices_are_inverse():
    assert [option_letter(i) for i in range(5)] == option_letters(5) == ["A", "B", "C", "D", "E"]
    assert [letter_index(x) for x in "ABCDE"] == [0, 1, 2, 3, 4]
    assert letter_index("c") == 2 and option_letter(25) == "Z"
    for bad in (-1, 26, True, 1.0):
        with pytest.raises(ValueError):
            option_letter(bad)
    for bad in ("", "AB", "1", "(A)", 0):
        with pytest.raises(ValueError):
            letter_index(bad)
    with pytest.raises(ValueError):
        option_letters(27)


@pytest.mark.parametrize("text, normal", [
    ("The red one.", "the red one"),
    ("  the   RED\tone ", "the red one"),
    ("the red one", "the red one"),
    ("Yes .", "yes"),
    ("3.5", "3.5"),
])
def test_one_normaliser_for_answers_and_options(text, normal):
    assert normalise_answer(text) == normal


def test_a_trailing_full_stop_does_not_split_a_benchmark_answer_from_its_option():
    """Both readers agree now: a manifest and a benchmark row name the option "Yes" by "yes."."""
    from hfs.manifests.benchmarks.base import text_index
    from hfs.manifests.formats import resolve_answer

    assert text_index("yes.", ["No", "Yes"]) == 1
    assert resolve_answer("yes.", ("No", "Yes")) == 1
