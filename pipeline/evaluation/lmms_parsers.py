"""lmms-eval's answer parsers, one function per benchmark: a generated response -> an option letter.

The ``lmms-eval`` protocol's second part (the first is ``lmms_prompts``): after greedy generation,
lmms-eval's ``process_results`` of each task turns the model's text into a letter and compares it
with the right one. Each function here reproduces that parsing, step for step, from the file its
docstring names (EvolvingLMMs-Lab/lmms-eval, read at commit 75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3,
the commit ``lmms_prompts`` follows). Quirks are kept, since the point is to count as lmms-eval
counts: e.g. Video-MME's and MLVU's parser only knows A-D; LongVideoBench's takes the first capital
A-E anywhere in the text, even past the last option.

What an unparseable response becomes is lmms-eval's too:

- Video-MME, MLVU: ``""`` (no letter), scored wrong;
- NExT-QA, LongVideoBench: a random option (``random.choice`` over the options, as lmms-eval
  does; pass ``rng`` to make it reproducible). ``parse_answer`` says when that happened.

``parse_answer(bench, response, options)`` is the one entry point the evaluation uses.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = [
    "LMMS_EVAL_MAX_NEW_TOKENS",
    "LMMS_EVAL_PARSERS",
    "LMMS_EVAL_WRAPPER_MAX_NEW_TOKENS",
    "ParsedAnswer",
    "extract_mcq_answer",
    "longvideobench_parse",
    "mlvu_parse",
    "nextqa_parse",
    "parse_answer",
    "videomme_parse",
]

LETTERS = "ABCDE"

LMMS_EVAL_MAX_NEW_TOKENS = {"nextqa": None, "videomme": 16, "longvideobench": 32, "mlvu": 16}
"""``generation_kwargs.max_new_tokens`` of each task's YAML (``videomme.yaml``,
``longvideobench_val_v.yaml``, ``mlvu_dev.yaml``; all greedy: temperature 0, do_sample false).
``nextqa_mc_test.yaml`` sets none: the model wrapper's own default applies (None here)."""

LMMS_EVAL_WRAPPER_MAX_NEW_TOKENS = 32768
"""The default of lmms-eval's Qwen2.5-VL model wrapper (lmms_eval/models/simple/qwen2_5_vl.py,
``default_gen_kwargs``), what a task without ``max_new_tokens`` (NExT-QA) generates up to; the
end of the assistant turn stops generation first."""

_RandomChoice = Callable[[Sequence[str]], str]


class ParsedAnswer(NamedTuple):
    """A parsed response: ``letter`` as lmms-eval's parser returns it ("" when it found none) and
    ``random_fallback`` (the letter was drawn at random because nothing could be parsed)."""

    letter: str
    random_fallback: bool


# --------------------------------------------------------------------------- Video-MME, MLVU

_ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select", "i pick",
    "my answer is", "my choice is",
    "옵션", "정답은", "답은", "답:",  # Korean
    "答案是", "答案为", "选",  # Chinese
    "答えは",  # Japanese
)
_FORMAT_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3,
                    "space": 2, "fallback": 0}


def extract_mcq_answer(response: str, choices: Sequence[str] | None = None) -> str:
    """lmms_eval/tasks/_task_utils/mcq_extract.py, ``extract_mcq_answer``: the choice letter of a
    free-form response, "" when none is found.

    Candidates in several formats ("(B)", "B.", "B:", "B)", "B ", after an answer phrase, at the
    start, at the end, then anywhere as a last resort); the highest-priority format wins, and
    within a format the last occurrence. ``choices`` default to A-H, as there.
    """
    if not response or not response.strip():
        return ""
    all_choices = list(choices or "ABCDEFGH")
    text = response.strip()
    for char in [",", ".", "!", "?", ";", ":", "'", '"']:
        text = text.strip(char)
    text = " " + text + " "
    candidates: list[tuple[str, int, str]] = []
    for fmt, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})"),
                         ("space", "{} ")):
        for ch in all_choices:
            needle = pattern.format(ch)
            if needle in text:
                candidates.append((ch, text.rfind(needle), fmt))
    text_lower = text.lower()
    for phrase in _ANSWER_PHRASES:
        idx = text_lower.find(phrase)
        if idx != -1:
            after = idx + len(phrase)
            for ch in all_choices:
                ch_pos = text.find(ch, after)
                if ch_pos != -1:
                    candidates.append((ch, ch_pos, "phrase"))
    stripped = text.strip()
    for ch in all_choices:
        if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha()):
            candidates.append((ch, 0, "start"))
    for ch in all_choices:
        if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha()):
            candidates.append((ch, len(text) - 1, "end"))
    if not candidates:
        for ch in all_choices:
            if ch in text:
                candidates.append((ch, text.rfind(ch), "fallback"))
    if not candidates:
        return ""
    candidates.sort(key=lambda x: (_FORMAT_PRIORITY.get(x[2], 0), x[1]), reverse=True)  # stable, as there
    return candidates[0][0]


def videomme_parse(response: str, options: Sequence[str] = (), rng: _RandomChoice | None = None) -> str:
    """Video-MME: lmms_eval/tasks/videomme/utils.py, ``extract_characters_regex`` (now
    ``extract_mcq_answer(s, choices=["A", "B", "C", "D"])``), as ``videomme_process_results``
    calls it. "" when no letter is found (scored wrong: "" is not the answer). ``options`` and
    ``rng`` are unused (same signature as the others)."""
    return extract_mcq_answer(response, choices=["A", "B", "C", "D"])


def mlvu_parse(response: str, options: Sequence[str] = (), rng: _RandomChoice | None = None) -> str:
    """MLVU dev: lmms_eval/tasks/mlvu/utils.py, ``extract_characters_regex`` (the same
    ``extract_mcq_answer`` over A-D only), as ``mlvu_process_results`` calls it; "" when no letter
    is found (wrong). A question whose answer is E or F can never be scored right, as in
    lmms-eval."""
    return extract_mcq_answer(response, choices=["A", "B", "C", "D"])


# --------------------------------------------------------------------------- NExT-QA


def nextqa_parse(response: str, options: Sequence[str], rng: _RandomChoice | None = None) -> str:
    """NExT-QA multiple choice: lmms_eval/tasks/nextqa/utils.py, ``parse_multi_choice_response``
    with ``get_multi_choice_info`` (MMMU's parser), as ``nextqa_mc_process_results`` calls it.

    ``options``: the five option texts (``a0`` ... ``a4``; stripped, as there). Letters in "(B)"
    first, then "B " (with a space after), then "B."; failing those, in a response of more than 5
    words, an option's text (case-insensitive); several candidates: the last one in the text.
    Nothing found: ``rng`` (default ``random.choice``, lmms-eval's) picks among A-E.
    """
    choice = rng or random.choice
    all_choices = [LETTERS[i] for i in range(len(options))]
    index2ans = {LETTERS[i]: str(o).strip() for i, o in enumerate(options)}
    for char in [",", ".", "!", "?", ";", ":", "'"]:
        response = response.strip(char)
    response = " " + response + " "
    index_ans = True
    ans_with_brack = False
    candidates: list[str] = []
    for ch in all_choices:
        if f"({ch})" in response:
            candidates.append(ch)
            ans_with_brack = True
    if not candidates:
        candidates = [ch for ch in all_choices if f"{ch} " in response]
    if not candidates:
        candidates = [ch for ch in all_choices if f"{ch}." in response]
    if not candidates and len(response.split()) > 5:
        for index, ans in index2ans.items():
            if ans.lower() in response.lower():
                candidates.append(index)
                index_ans = False
    if not candidates:
        return choice(all_choices)
    if len(candidates) == 1:
        return candidates[0]
    if index_ans:
        if ans_with_brack:
            starts = [response.rfind(f"({can})") for can in candidates]
        else:
            starts = [response.rfind(f" {can} ") for can in candidates]
    else:
        starts = [response.lower().rfind(index2ans[can].lower()) for can in candidates]
    return candidates[starts.index(max(starts))]  # np.argmax: the first of equal maxima


# --------------------------------------------------------------------------- LongVideoBench

_LVB_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
                 "The correct option is", "Best answer:", "Best option:")


def longvideobench_parse(response: str, options: Sequence[str], rng: _RandomChoice | None = None) -> str:
    """LongVideoBench: lmms_eval/tasks/longvideobench/utils.py, ``parse_multi_choice_response``, as
    ``longvideobench_process_results`` calls it (choices: a letter per option, up to the first
    "N/A").

    The answer prefixes ("The best answer is", ...) are removed, then the first capital A-E
    anywhere is the answer (even one past the last option, which is then wrong; "I" or "a" are
    not letters here but "A" in "A man" is). None: ``rng`` (default ``random.choice``) picks among
    the options' letters.
    """
    choice = rng or random.choice
    all_choices = [LETTERS[i] for i in range(len(options))]
    s = response.strip()
    for prefix in _LVB_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCDE]", s):
        return choice(all_choices)
    match = re.search(r"[ABCDE]", s)
    if match is None:
        return choice(all_choices)
    return match[0]


# --------------------------------------------------------------------------- entry point

LMMS_EVAL_PARSERS: dict[str, Callable[..., str]] = {
    "nextqa": nextqa_parse,
    "videomme": videomme_parse,
    "longvideobench": longvideobench_parse,
    "mlvu": mlvu_parse,
}
_RANDOM_FALLBACK = {"nextqa", "longvideobench"}


def parse_answer(bench: str, response: str, options: Sequence[str], rng: random.Random | None = None) -> ParsedAnswer:
    """lmms-eval's parse of ``response`` for a question of ``bench`` with these option texts.

    ``rng``: the random source of NExT-QA's and LongVideoBench's fallback (default: the ``random``
    module, as in lmms-eval); ``random_fallback`` is true when the letter came from it.
    """
    try:
        parser = LMMS_EVAL_PARSERS[bench]
    except KeyError:
        raise ValueError(f"no lmms-eval answer parser for benchmark {bench!r}; "
                         f"known: {', '.join(LMMS_EVAL_PARSERS)}") from None
    if not isinstance(response, str):
        raise TypeError(f"response must be text, got {type(response).__name__}")
    drawn: list[str] = []
    source = rng if rng is not None else random

    def pick(choices: Sequence[str]) -> str:
        drawn.append(source.choice(list(choices)))
        return drawn[-1]

    letter = parser(response, options, pick) if bench in _RANDOM_FALLBACK else parser(response, options)
    return ParsedAnswer(letter, bool(drawn))
