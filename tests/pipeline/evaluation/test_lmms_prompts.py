"""lmms-eval's prompt text per benchmark (pipeline/evaluation/lmms_prompts.py) against strings made by
lmms-eval's own ``doc_to_text`` functions (EvolvingLMMs-Lab/lmms-eval at commit 75571cfe0fa3, each
function run on the doc below with its task YAML's ``default`` pre/post prompts), vendored here."""

from __future__ import annotations

import pytest

from hfs.pipeline.evaluation.lmms_prompts import (
    LMMS_EVAL_PROMPTS,
    lmms_eval_prompt,
    longvideobench_prompt,
    mlvu_prompt,
    nextqa_prompt,
    videomme_prompt,
)

VIDEOMME_DOC = {"question": "How many planets are shown?", "options": ["A. Seven.", "B. Eight.", "C. Nine.", "D. Ten."]}
VIDEOMME_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video and the "
                        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")


def test_nextqa_is_nextqa_doc_to_text_mc():
    # lmms_eval/tasks/nextqa/utils.py nextqa_doc_to_text_mc; nextqa_mc_test sets no pre/post prompt
    doc = {"question": " why did the boy pick up the ball ", "a0": "to throw it ", "a1": "play", "a2": " give it to dog",
           "a3": "clean", "a4": "kick it"}
    assert nextqa_prompt(doc) == ("why did the boy pick up the ball\nA. to throw it\nB. play\nC. give it to dog\n"
                                  "D. clean\nE. kick it")


def test_videomme_is_videomme_doc_to_text():
    # lmms_eval/tasks/videomme/utils.py videomme_doc_to_text, videomme.yaml's default post prompt
    assert videomme_prompt(VIDEOMME_DOC) == (
        VIDEOMME_INSTRUCTION + "\nHow many planets are shown?\nA. Seven.\nB. Eight.\nC. Nine.\nD. Ten.\n\n"
        "Answer with the option's letter from the given choices directly.")


def test_videomme_with_subtitles_is_videomme_doc_to_text_subtitle():
    # lmms_eval/tasks/videomme/utils.py videomme_doc_to_text_subtitle for a video without a subtitle file
    assert videomme_prompt(VIDEOMME_DOC, None, with_subtitles=True) == (
        "This video's subtitles are listed below: \nNo subtitles available\n" + VIDEOMME_INSTRUCTION
        + "\nHow many planets are shown?\nA. Seven.\nB. Eight.\nC. Nine.\nD. Ten.\nThe best answer is:")
    # with subtitle lines (the same function, lines joined by newlines; which lines is lmms-eval's rule)
    assert videomme_prompt(VIDEOMME_DOC, ["first line", "second line"], with_subtitles=True).startswith(
        "This video's subtitles are listed below: \nfirst line\nsecond line\n" + VIDEOMME_INSTRUCTION + "\n")
    assert videomme_prompt(VIDEOMME_DOC, [], with_subtitles=True).startswith(
        "This video's subtitles are listed below: \n\n" + VIDEOMME_INSTRUCTION)  # a file, but no line picked


def test_longvideobench_is_longvideobench_doc_to_text():
    # lmms_eval/tasks/longvideobench/utils.py longvideobench_doc_to_text, longvideobench_val_v.yaml's default
    expected = ("In the scene where a man waves, what colour is his hat?\nA. red\nB. blue\nC. green\n"
                "Answer with the option's letter from the given choices directly.\n")
    parquet_row = {"question": "In the scene where a man waves, what colour is his hat?", "option0": "red",
                   "option1": "blue", "option2": "green", "option3": "N/A", "option4": "N/A"}
    assert longvideobench_prompt(parquet_row) == expected
    json_record = {"question": parquet_row["question"], "candidates": ["red", "blue", "green"]}
    assert longvideobench_prompt(json_record) == expected  # the JSON release's candidates: the same text
    # longvideobench_val_i: the interleaved prefix (frames written "<image>") and a newline first
    assert (longvideobench_prompt(parquet_row, interleaved_prefix="<image>\nhello\n<image>")
            == "<image>\nhello\n<image>\n" + expected)


def test_mlvu_is_mlvu_doc_to_text_with_best_option():
    # lmms_eval/tasks/mlvu/utils.py mlvu_doc_to_text, mlvu_dev.yaml's default post prompt
    doc = {"question": "What color is the main character's car?\n(A) Yellow\n(B) Red\n(C) Cyan\n(D) Blue"}
    assert mlvu_prompt(doc) == ("What color is the main character's car?\n(A) Yellow\n(B) Red\n(C) Cyan\n(D) Blue\n"
                                "Only give the best option.\nBest option: (")


def test_every_benchmark_has_a_prompt_and_an_unknown_one_is_named():
    from hfs.manifests.benchmarks import list_benchmarks

    assert set(LMMS_EVAL_PROMPTS) == set(list_benchmarks())
    assert lmms_eval_prompt("mlvu", {"question": "Q?\n(A) a\n(B) b"}).endswith("Best option: (")
    with pytest.raises(ValueError, match="no lmms-eval prompt for benchmark 'nope'; known: nextqa"):
        lmms_eval_prompt("nope", {})


def test_lmms_eval_doc_rebuilds_the_published_row_from_a_sample():
    from hfs.manifests import QASample
    from hfs.pipeline.evaluation.lmms_prompts import lmms_eval_doc

    def sample(question, options, **meta):
        return QASample("q", "", question, tuple(options), options[0], 0, "", meta)

    vm = sample("How many planets are shown?", ["Seven.", "Eight.", "Nine.", "Ten."])
    assert lmms_eval_doc("videomme", vm) == VIDEOMME_DOC
    nq = lmms_eval_doc("nextqa", sample("why?", ["a", "b", "c", "d", "e"]))
    assert nextqa_prompt(nq) == "why?\nA. a\nB. b\nC. c\nD. d\nE. e"
    assert lmms_eval_doc("longvideobench", sample("Q?", ["red", "blue"])) == {"question": "Q?",
                                                                                "candidates": ["red", "blue"]}
    raw = "What color is the car?\n(A) Yellow\n(B) Red"
    assert lmms_eval_doc("mlvu", sample("What color is the car?", ["Yellow", "Red"], question_raw=raw)) == {
        "question": raw}  # the parquet's question, as published
    assert lmms_eval_doc("mlvu", sample("What color is the car?", ["Yellow", "Red"])) == {"question": raw}
    with pytest.raises(ValueError, match="no lmms-eval prompt for benchmark 'nope'"):
        lmms_eval_doc("nope", vm)
