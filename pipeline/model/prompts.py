"""Prompt texts of the student (Eqs. 2-4) and the teacher (Eq. 16).

Every string the models see is built here, so it can be snapshot-tested and
changed in one place. The wording of `COT_PROMPT` is ours: the paper only says
that the student's task analyzer is prompted to reason about the question and
options step by step and to name the concepts and visual cues that matter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hfs.manifests.answers import option_letters

COT_PROMPT = (
    "You are choosing which video frames a viewer must see to answer a question. "
    "Think step by step. First, state what the question asks about. "
    "Second, compare the answer options and find what makes each one different from the others. "
    "Third, name the key objects, people, actions, places and moments, and the visual cues "
    "(appearance, position, motion, order in time) that would show which option is correct."
)
"""Task-analyzer instruction of the student, embedded as E_CoT (Eqs. 3-4)."""

MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
"""Teacher instruction for multiple-choice questions: the first answer token is the letter."""

MC_TEXT_INSTRUCTION = "Answer with the text of the correct option."
"""Teacher instruction for a teacher that answers by the option's text (``answer_scoring="option_text"``)."""

OPEN_INSTRUCTION = "Answer the question concisely."
"""Teacher instruction for open-ended questions (no options)."""

def strip_option_letter(option: str, letter: str) -> str:
    """Drop a leading "A.", "A)", "(A)" or "A:" that a dataset already put in front of option `letter`."""
    pattern = rf"^\s*(?:\({letter}\)|{letter}[.):])\s*"
    return re.sub(pattern, "", option, count=1).strip()


def format_options(options: Sequence[str]) -> str:
    """Options as lettered lines: ["x", "y"] -> "A. x\\nB. y" (existing letter prefixes are not doubled)."""
    letters = option_letters(len(options))
    return "\n".join(f"{letter}. {strip_option_letter(opt, letter)}" for letter, opt in zip(letters, options))


def _question_block(question: str, options: Sequence[str] | None) -> str:
    """ "Question: …" plus, when there are options, "Options:" and the lettered lines."""
    text = f"Question: {question.strip()}"
    if options:
        text += f"\nOptions:\n{format_options(options)}"
    return text


def student_qa_text(question: str, options: Sequence[str] | None) -> str:
    """Text of E_qa (Eq. 2): the question and its lettered options (none for open-ended questions)."""
    return _question_block(question, options)


def format_timestamps(timestamps: Sequence[float]) -> str:
    """One line per frame, in the order the images are given: "Frame 1 at 3.2s"."""
    return "\n".join(f"Frame {i} at {float(t):.1f}s" for i, t in enumerate(timestamps, start=1))


def _timestamp_block(timestamps: Sequence[float] | None) -> str:
    """Lead-in naming each frame's time in the video, or "" without timestamps."""
    if timestamps is None or len(timestamps) == 0:
        return ""
    return f"The frames above are in time order, sampled from the video at:\n{format_timestamps(timestamps)}\n"


def _subtitle_block(subtitles: Sequence[str] | None) -> str:
    """The subtitle lines around the selected frames, or "" without subtitles (lmms-eval's
    Video-MME wording)."""
    if not subtitles:
        return ""
    return "This video's subtitles are listed below:\n" + "\n".join(subtitles) + "\n"


def teacher_prompt_text(
    question: str, options: Sequence[str], timestamps: Sequence[float] | None = None,
    subtitles: Sequence[str] | None = None, instruction: str = MC_INSTRUCTION,
) -> str:
    """User text of the teacher for a multiple-choice question (Eq. 16): optional frame
    times, optional subtitle lines, the question, lettered options, and the instruction
    (default: answer with the letter only)."""
    if not options:
        raise ValueError("a multiple-choice teacher prompt needs at least one option; use teacher_open_prompt_text")
    return (f"{_timestamp_block(timestamps)}{_subtitle_block(subtitles)}{_question_block(question, options)}"
            f"\n{instruction}")


def teacher_open_prompt_text(
    question: str, timestamps: Sequence[float] | None = None, subtitles: Sequence[str] | None = None
) -> str:
    """User text of the teacher for an open-ended question: optional frame times and subtitle
    lines, the question, the instruction."""
    return f"{_timestamp_block(timestamps)}{_subtitle_block(subtitles)}{_question_block(question, None)}\n{OPEN_INSTRUCTION}"


def teacher_messages(num_images: int, text: str) -> list[dict]:
    """One user turn for the processor's chat template: `num_images` image slots (the
    selected frames, in time order) followed by `text`."""
    content: list[dict] = [{"type": "image"} for _ in range(num_images)]
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def teacher_video_messages(text: str) -> list[dict]:
    """One user turn with a single video slot (the selected frames as one clip) followed by
    `text`: the order lmms-eval's default ``doc_to_messages`` gives a video task (visuals, then text)."""
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
