"""The stand-in teacher's option shuffling (fitting itself runs in tests/stages/test_demo.py)."""

from __future__ import annotations

import random

from hfs.pipeline.demo.teacher import permuted


def test_permuted_options_keep_the_answer_text_and_move_its_letter():
    options = ["red", "green", "blue", "yellow", "magenta"]
    rng = random.Random(0)
    seen = set()
    for _ in range(50):
        shuffled, answer = permuted(options, 2, rng)
        assert sorted(shuffled) == sorted(options) and shuffled[answer] == "blue"
        seen.add(answer)
    assert seen == set(range(5))  # every letter names the answer some time
    assert permuted(options, 2, random.Random(7)) == permuted(options, 2, random.Random(7))  # seeded
    assert options == ["red", "green", "blue", "yellow", "magenta"]  # the caller's list is left alone
