"""Option letters and answer text, the one place that spells them out.

Multiple-choice options are lettered A, B, C, ... in order (``option_letter`` /
``letter_index``); an answer given as text matches an option when their normalised forms
are equal (``normalise_answer``: case, runs of white space and one trailing full stop do
not count, so "The red one." names the option "the red one").
"""

from __future__ import annotations

import string

__all__ = ["MAX_OPTIONS", "option_letter", "option_letters", "letter_index", "normalise_answer"]

MAX_OPTIONS = len(string.ascii_uppercase)
"""Options a question may have: one per capital letter."""


def option_letter(index: int) -> str:
    """The letter of option ``index`` (0 → "A"); ValueError past "Z"."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_OPTIONS:
        raise ValueError(f"an option index must be an int in [0, {MAX_OPTIONS}), got {index!r}")
    return string.ascii_uppercase[index]


def option_letters(n: int) -> list[str]:
    """The letters of n options: A, B, ... (ValueError past "Z")."""
    if not 0 <= n <= MAX_OPTIONS:
        raise ValueError(f"number of options must be between 0 and {MAX_OPTIONS}, got {n}")
    return list(string.ascii_uppercase[:n])


def letter_index(letter: str) -> int:
    """The index of an option letter ("A" → 0; lower case accepted); ValueError for anything else."""
    if not isinstance(letter, str) or len(letter) != 1 or letter.upper() not in string.ascii_uppercase:
        raise ValueError(f"an option letter must be one of A-Z, got {letter!r}")
    return string.ascii_uppercase.index(letter.upper())


def normalise_answer(text: str) -> str:
    """Case- and space-insensitive form of an answer or option text, one trailing "." dropped."""
    return " ".join(text.casefold().split()).rstrip(".").rstrip()
