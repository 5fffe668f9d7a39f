"""Snapshot tests of every prompt string (student Eqs. 2-4, teacher Eq. 16)."""

from __future__ import annotations

import pytest

from hfs.pipeline.model import prompts

pytestmark = pytest.mark.xdist_group("models")  # one test process loads the model stack (--dist loadgroup)

QUESTION = "What does the man do after opening the fridge?"
OPTIONS = ["He drinks milk.", "B. He closes the door.", "(C) He leaves the kitchen."]
TIMES = [3.2, 7.5, 12.04]

MC_TEXT = (
    "The frames above are in time order, sampled from the video at:\n"
    "Frame 1 at 3.2s\n"
    "Frame 2 at 7.5s\n"
    "Frame 3 at 12.0s\n"
    "Question: What does the man do after opening the fridge?\n"
    "Options:\n"
    "A. He drinks milk.\n"
    "B. He closes the door.\n"
    "C. He leaves the kitchen.\n"
    "Answer with the option's letter from the given choices directly."
)


def test_cot_prompt_snapshot():
    assert prompts.COT_PROMPT == (
        "You are choosing which video frames a viewer must see to answer a question. "
        "Think step by step. First, state what the question asks about. "
        "Second, compare the answer options and find what makes each one different from the others. "
        "Third, name the key objects, people, actions, places and moments, and the visual cues "
        "(appearance, position, motion, order in time) that would show which option is correct."
    )


def test_option_letters():
    assert prompts.option_letters(0) == []
    assert prompts.option_letters(5) == ["A", "B", "C", "D", "E"]
    with pytest.raises(ValueError, match="between 0 and 26"):
        prompts.option_letters(27)


def test_format_options_does_not_double_letters():
    assert prompts.format_options(["x", "y"]) == "A. x\nB. y"
    assert prompts.format_options(OPTIONS) == "A. He drinks milk.\nB. He closes the door.\nC. He leaves the kitchen."
    # a letter that is not the option's own is content, not a prefix
    assert prompts.format_options(["B. wrong slot"]) == "A. B. wrong slot"


def test_student_qa_text_snapshot():
    assert prompts.student_qa_text(QUESTION, OPTIONS) == (
        "Question: What does the man do after opening the fridge?\n"
        "Options:\n"
        "A. He drinks milk.\n"
        "B. He closes the door.\n"
        "C. He leaves the kitchen."
    )
    assert prompts.student_qa_text("  Why?  ", None) == "Question: Why?"
    assert prompts.student_qa_text("Why?", []) == "Question: Why?"


def test_teacher_prompt_text_snapshot():
    assert prompts.teacher_prompt_text(QUESTION, OPTIONS, TIMES) == MC_TEXT
    assert prompts.teacher_prompt_text("Why?", ["a", "b"]) == (
        "Question: Why?\nOptions:\nA. a\nB. b\nAnswer with the option's letter from the given choices directly."
    )
    with pytest.raises(ValueError, match="at least one option"):
        prompts.teacher_prompt_text("Why?", [])


def test_teacher_open_prompt_text_snapshot():
    assert prompts.teacher_open_prompt_text("What is he cooking?", [1.0, 2.25]) == (
        "The frames above are in time order, sampled from the video at:\n"
        "Frame 1 at 1.0s\n"
        "Frame 2 at 2.2s\n"
        "Question: What is he cooking?\n"
        "Answer the question concisely."
    )
    assert prompts.teacher_open_prompt_text("What is he cooking?") == (
        "Question: What is he cooking?\nAnswer the question concisely."
    )


def test_teacher_messages_shape():
    messages = prompts.teacher_messages(2, "hi")
    assert messages == [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "hi"}]}
    ]


def test_chat_templated_teacher_prompt_qwen_vl():
    from hfs.pipeline.model.tiny import build_tiny_processor

    processor = build_tiny_processor("qwen2_5_vl")
    text = processor.apply_chat_template(
        prompts.teacher_messages(3, MC_TEXT), add_generation_prompt=True, tokenize=False
    )
    frame = "<|vision_start|><|image_pad|><|vision_end|>"
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        f"<|im_start|>user\n{frame}{frame}{frame}{MC_TEXT}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_chat_templated_teacher_prompt_internvl():
    from hfs.pipeline.model.tiny import build_tiny_processor

    processor = build_tiny_processor("internvl")
    text = processor.apply_chat_template(
        prompts.teacher_messages(3, MC_TEXT), add_generation_prompt=True, tokenize=False
    )
    assert text == (
        "<|im_start|>user\n<IMG_CONTEXT>\n<IMG_CONTEXT>\n<IMG_CONTEXT>\n"
        f"{MC_TEXT}<|im_end|>\n<|im_start|>assistant\n"
    )
