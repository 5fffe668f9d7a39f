"""lmms-eval's prompt text, one function per benchmark: the `lmms-eval` protocol's first part.

`hfs evaluate --protocol lmms-eval` is to ask the teacher exactly what lmms-eval asks it, so a
figure can be put beside published lmms-eval numbers. Each function here rebuilds the string
of one lmms-eval task's ``doc_to_text`` with the task's ``default`` pre/post prompts (its YAML's
``lmms_eval_specific_kwargs``), from ``doc``: the question's row as lmms-eval's dataset gives it
(the benchmark's published parquet row; the field names are listed per function). The
docstrings name the lmms-eval file each function follows (EvolvingLMMs-Lab/lmms-eval, read at
commit 75571cfe0fa3); the tests compare against strings made by those functions.

Its answer parsers are in ``lmms_parsers``; greedy generation is ``Teacher.generate``;
``lmms_eval_doc`` rebuilds a ``doc`` from our ``QASample``. Not here: the frames as lmms-eval's
model wrapper is shown them (``predictions.GeneratingAnswerer``), its subtitle-line rules (Video-MME
takes the subtitle lines as given, ``longvideobench_prompt`` the interleaved prefix made by
``subtitles.sample_lmms_eval_lvb_prefix``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "PROTOCOLS",
    "LMMS_EVAL_PROMPTS",
    "lmms_eval_doc",
    "lmms_eval_prompt",
    "nextqa_prompt",
    "videomme_prompt",
    "longvideobench_prompt",
    "mlvu_prompt",
]

PROTOCOLS = ("hfs", "lmms-eval")
"""``hfs evaluate --protocol``: ``hfs`` (option-letter logits, k frames with their times) or
``lmms-eval`` (its prompt text, greedy generation and answer parser)."""

LETTERS = "ABCDE"

VIDEOMME_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video and "
                        "the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
VIDEOMME_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
VIDEOMME_SUBTITLES_HEADER = "This video's subtitles are listed below: \n"
VIDEOMME_NO_SUBTITLES = "No subtitles available"
VIDEOMME_SUBTITLES_POST_PROMPT = "The best answer is:"
LONGVIDEOBENCH_POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
MLVU_POST_PROMPT = "\nOnly give the best option.\nBest option: ("


def nextqa_prompt(doc: Mapping, pre_prompt: str = "", post_prompt: str = "") -> str:
    """NExT-QA multiple choice (task ``nextqa_mc_test``): lmms_eval/tasks/nextqa/utils.py,
    ``nextqa_doc_to_text_mc``. ``doc``: ``question``, ``a0`` … ``a4`` (the MC parquet's columns).

    The question, then "A. …" to "E. …", one a line, each stripped; the task's YAML sets no
    pre/post prompt (an empty one adds nothing).
    """
    text = "\n".join([str(doc["question"]).strip()]
                     + [f"{LETTERS[i]}. {str(doc[f'a{i}']).strip()}" for i in range(5)])
    return f"{pre_prompt}{text}{post_prompt}"


def videomme_prompt(doc: Mapping, subtitle_lines: Sequence[str] | None = None, *, with_subtitles: bool = False,
                     post_prompt: str = VIDEOMME_POST_PROMPT) -> str:
    """Video-MME (tasks ``videomme`` and ``videomme_w_subtitle``): lmms_eval/tasks/videomme/utils.py,
    ``videomme_doc_to_text`` and ``videomme_doc_to_text_subtitle``. ``doc``: ``question``,
    ``options`` (the parquet's list, each already "A. …").

    Without subtitles: the instruction (which names subtitles even here, as lmms-eval's does),
    the question, its options and the task's post prompt, one a line. With ``with_subtitles``:
    "This video's subtitles are listed below: " and the subtitle text first (``subtitle_lines``
    joined by newlines; None: the video has no subtitle file, "No subtitles available"), and
    "The best answer is:" last (that task's post prompt is not used). Which lines lmms-eval
    picks (those at 32 frames uniform over the video) is `subtitles.sample_lmms_eval_subtitle_lines`.
    """
    question = str(doc["question"]) + "\n" + "\n".join(str(o) for o in doc["options"])
    if not with_subtitles:
        return VIDEOMME_INSTRUCTION + "\n" + question + "\n" + post_prompt
    subtitles = VIDEOMME_NO_SUBTITLES if subtitle_lines is None else "\n".join(subtitle_lines)
    return (VIDEOMME_SUBTITLES_HEADER + subtitles + "\n" + VIDEOMME_INSTRUCTION + "\n" + question + "\n"
            + VIDEOMME_SUBTITLES_POST_PROMPT)


def longvideobench_prompt(doc: Mapping, pre_prompt: str = "", post_prompt: str = LONGVIDEOBENCH_POST_PROMPT,
                          interleaved_prefix: str | None = None) -> str:
    """LongVideoBench (task ``longvideobench_val_v``): lmms_eval/tasks/longvideobench/utils.py,
    ``longvideobench_doc_to_text`` without interleaved subtitles. ``doc``: ``question`` and
    ``option0`` … ``option4`` (the parquet's columns, "N/A" past the last option), or
    ``candidates`` (the JSON release's list, the same options).

    The question, then "A. …" for each option, one a line, then the post prompt on its own line.
    With ``interleaved_prefix`` (task ``longvideobench_val_i``: frames and subtitles interleaved,
    ``subtitles.lvb_interleave`` written by ``subtitles.lmms_eval_lvb_prompt_prefix``) that text and
    a newline come before the question.
    """
    if "candidates" in doc and "option0" not in doc:
        candidates = [str(c) for c in doc["candidates"]]
    else:
        candidates = [doc.get(f"option{i}") for i in range(5)]
        candidates = [c for c in candidates if c != "N/A"]
    question = str(doc["question"]) + "\n" + "\n".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(candidates))
    if interleaved_prefix is not None:
        return f"{pre_prompt}{interleaved_prefix}\n{question}\n{post_prompt}"
    return f"{pre_prompt}{question}\n{post_prompt}"


def mlvu_prompt(doc: Mapping, pre_prompt: str = "", post_prompt: str = MLVU_POST_PROMPT) -> str:
    """MLVU dev (task ``mlvu_dev``): lmms_eval/tasks/mlvu/utils.py, ``mlvu_doc_to_text``. ``doc``:
    ``question`` as the MLVU_dev parquet writes it, options included ("…?\\n(A) …\\n(B) …").

    The question as it is, then "\\nOnly give the best option.\\nBest option: (": the model is to
    go on with the letter.
    """
    return f"{pre_prompt}{doc['question']}{post_prompt}"


LMMS_EVAL_PROMPTS: dict[str, Callable[..., str]] = {
    "nextqa": nextqa_prompt,
    "videomme": videomme_prompt,
    "longvideobench": longvideobench_prompt,
    "mlvu": mlvu_prompt,
}


def lmms_eval_prompt(bench: str, doc: Mapping, **kwargs) -> str:
    """lmms-eval's prompt text for a question of ``bench`` (a key of ``LMMS_EVAL_PROMPTS``);
    ``kwargs`` go to that benchmark's function (e.g. Video-MME's subtitles)."""
    try:
        fn = LMMS_EVAL_PROMPTS[bench]
    except KeyError:
        raise ValueError(f"no lmms-eval prompt for benchmark {bench!r}; known: {', '.join(LMMS_EVAL_PROMPTS)}") from None
    return fn(doc, **kwargs)


def lmms_eval_doc(bench: str, sample) -> dict:
    """The ``doc`` lmms-eval's ``doc_to_text`` of ``bench`` reads, rebuilt from a ``QASample`` as
    our readers make it: NExT-QA ``question``, ``a0`` ... ``a4``; Video-MME ``question`` and
    ``options`` as "A. text"; LongVideoBench ``question`` and ``candidates``; MLVU ``question``
    with its options, as the MLVU_dev parquet writes it (``meta["question_raw"]``, else rebuilt as
    "question\\n(A) text\\n(B) text", the JSON release having the options apart).
    """
    options = [str(o) for o in sample.options]
    if bench == "nextqa":
        return {"question": sample.question, **{f"a{i}": o for i, o in enumerate(options)}}
    if bench == "videomme":
        return {"question": sample.question, "options": [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]}
    if bench == "longvideobench":
        return {"question": sample.question, "candidates": options}
    if bench == "mlvu":
        raw = sample.meta.get("question_raw")
        if raw is None:
            raw = "\n".join([sample.question] + [f"({chr(ord('A') + i)}) {o}" for i, o in enumerate(options)])
        return {"question": raw}
    raise ValueError(f"no lmms-eval prompt for benchmark {bench!r}; known: {', '.join(LMMS_EVAL_PROMPTS)}")
