"""lmms-eval's answer parsers (pipeline/evaluation/lmms_parsers.py) on vendored response -> letter pairs.

Each expected letter was derived by reading EvolvingLMMs-Lab/lmms-eval at commit
75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3 (lmms_eval/tasks/_task_utils/mcq_extract.py for Video-MME
and MLVU; lmms_eval/tasks/nextqa/utils.py and lmms_eval/tasks/longvideobench/utils.py,
``parse_multi_choice_response``) and checked by running those functions on the same input.
``RANDOM`` marks a response lmms-eval answers with ``random.choice`` (NExT-QA, LongVideoBench).
"""

from __future__ import annotations

import random

import pytest

from hfs.pipeline.evaluation.lmms_parsers import (
    LMMS_EVAL_MAX_NEW_TOKENS,
    ParsedAnswer,
    extract_mcq_answer,
    longvideobench_parse,
    mlvu_parse,
    nextqa_parse,
    parse_answer,
    videomme_parse,
)

RANDOM = object()

NEXTQA_OPTIONS = ("to throw it ", "play", " give it to dog", "clean", "kick it")
LVB_OPTIONS = ("red", "blue", "green", "yellow")  # four options: E is past the last one

VIDEOMME_PAIRS = [
    ("B", "B"),
    ("The answer is (B).", "B"),
    ("(C)", "C"),
    ("B. Eight.", "B"),
    ("b", ""),  # lowercase is not a letter to it
    ("", ""),
    ("   ", ""),
    ("Eight.", ""),  # option text instead of a letter: nothing found, wrong
    ("E", ""),  # only A-D are choices
    ("I think it is C, not D", "D"),  # ends with a standalone D: "end" outranks "space"
    ("Answer: A", "A"),
    ("The best answer is: D. Ten.", "D"),
    ("A and B are wrong; C", "A"),  # "start" A (priority 10) outranks "end" C (9)
    ("Option C is right, because the video shows nine", "C"),  # "C " with a space
    ("BECAUSE", "A"),  # fallback, any occurrence: the one furthest in the text (A, at 4)
]

MLVU_PAIRS = [
    ("B) A red car", "B"),  # the prompt ends "Best option: (": the model goes on "B) ..."
    ("B", "B"),
    ("(D) the man", "D"),
    ("E) six", ""),  # MLVU's parser only knows A-D
    ("", ""),
    ("d", ""),
    ("The best option is (A).", "A"),
]

NEXTQA_PAIRS = [
    ("B", "B"),
    ("(B)", "B"),
    ("The answer is (B).", "B"),
    ("B.", "B"),  # "." stripped, then "B "
    ("A. to throw it", "A"),  # no "(A)" nor "A ", then "A."
    ("(A) or (C)", "C"),  # several: the last one
    ("A or C", "C"),
    ("I think the boy wants to give it to dog", "C"),  # more than 5 words: an option's text
    ("give it to dog", RANDOM),  # 4 words: not matched by text
    ("", RANDOM),
    ("b", RANDOM),
    ("none of these", RANDOM),
]

LVB_PAIRS = [
    ("B", "B"),
    ("The answer is (B).", "B"),
    ("The best answer is C", "C"),
    ("(D) yellow", "D"),
    ("A man waves, so the hat is C", "A"),  # the first capital A-E anywhere, "A man" included
    ("E", "E"),  # past the last option: kept (then wrong)
    ("", RANDOM),
    ("b", RANDOM),
    ("the hat that the man is wearing while he waves at us is blue", RANDOM),  # > 10 words, no capital
    ("blue", RANDOM),
]


class _Fixed:
    """A stand-in rng whose choice is always the last letter offered (so a fallback is visible)."""

    def choice(self, seq):
        return seq[-1]


@pytest.mark.parametrize("response,expected", VIDEOMME_PAIRS)
def test_videomme_parser(response, expected):
    assert videomme_parse(response) == expected
    assert parse_answer("videomme", response, ()) == ParsedAnswer(expected, False)


@pytest.mark.parametrize("response,expected", MLVU_PAIRS)
def test_mlvu_parser(response, expected):
    assert mlvu_parse(response) == expected
    assert parse_answer("mlvu", response, ()) == ParsedAnswer(expected, False)


@pytest.mark.parametrize("response,expected", NEXTQA_PAIRS)
def test_nextqa_parser(response, expected):
    parsed = parse_answer("nextqa", response, NEXTQA_OPTIONS, rng=_Fixed())
    if expected is RANDOM:
        assert parsed == ParsedAnswer("E", True)  # drawn among A-E
    else:
        assert parsed == ParsedAnswer(expected, False)
        assert nextqa_parse(response, NEXTQA_OPTIONS) == expected


@pytest.mark.parametrize("response,expected", LVB_PAIRS)
def test_longvideobench_parser(response, expected):
    parsed = parse_answer("longvideobench", response, LVB_OPTIONS, rng=_Fixed())
    if expected is RANDOM:
        assert parsed == ParsedAnswer("D", True)  # drawn among the four options' letters
    else:
        assert parsed == ParsedAnswer(expected, False)
        assert longvideobench_parse(response, LVB_OPTIONS) == expected


def test_random_fallback_is_reproducible_with_a_seeded_rng():
    a = parse_answer("nextqa", "", NEXTQA_OPTIONS, rng=random.Random(0))
    b = parse_answer("nextqa", "", NEXTQA_OPTIONS, rng=random.Random(0))
    assert a == b and a.letter in "ABCDE" and a.random_fallback
    rng = random.Random(1)
    letters = {parse_answer("longvideobench", "", LVB_OPTIONS, rng=rng).letter for _ in range(50)}
    assert letters == set("ABCD")  # never E with four options


def test_extract_mcq_answer_defaults_to_a_to_h():
    assert extract_mcq_answer("F") == "F"
    assert extract_mcq_answer("F", ["A", "B"]) == ""


def test_unknown_benchmark_and_non_text_response_are_clear_errors():
    with pytest.raises(ValueError, match="no lmms-eval answer parser for benchmark 'foo'"):
        parse_answer("foo", "A", ())
    with pytest.raises(TypeError, match="response must be text"):
        parse_answer("videomme", None, ())


def test_max_new_tokens_are_the_task_yamls():
    assert LMMS_EVAL_MAX_NEW_TOKENS == {"nextqa": None, "videomme": 16, "longvideobench": 32, "mlvu": 16}
