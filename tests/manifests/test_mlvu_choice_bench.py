"""MLVU's JSON release scored as its official choice_bench.py scores it: the eight rows whose answer is
two candidates, all-empty, or none of them (JUNJIE99/MLVU data/, found by reading the release)."""

from __future__ import annotations

import json

import pytest

from hfs.manifests.benchmarks import get_benchmark
from hfs.manifests.benchmarks.base import RowError
from hfs.manifests.benchmarks.mlvu import choice_bench_index
from hfs.pipeline.evaluation.scoring import prediction_record

from benchmark_layouts import mlvu_record, touch, write_text


def test_choice_bench_index_takes_the_last_equal_candidate_or_none():
    # rows of the release, as published
    assert choice_bench_index("Three", ["Six", "Three", "Three", "Eight"]) == (
        2, "answer 'Three' is candidates B, C: choice_bench.py takes the last")  # 1_plotQA 335
    assert choice_bench_index("", ["", "", "", ""])[0] == 3  # 7_topic_reasoning 26
    index, rule = choice_bench_index("Catching a flying drone quadcopter",  # 2_needle 34
                                     ["Fishing", "Catching the drone", "Launching the drone", "Sunbathing"])
    assert index is None and "scores it wrong whatever the prediction" in rule
    assert choice_bench_index("Red", ["Yellow", "Red"]) == (1, None)
    assert choice_bench_index("red", ["Yellow", "Red"])[0] is None  # exact text, as qa_template's `c == answer`
    for answer, candidates, reason in [(None, ["a", "b"], "'answer' must be"), ("a", ["a"], "at least 2"),
                                       ("a", None, "must be a list of texts"), ("a", ["a", 3], "must be a list")]:
        with pytest.raises(RowError, match=reason):
            choice_bench_index(answer, candidates)


def test_json_view_scores_those_rows(tmp_path):
    root = tmp_path / "MLVU"
    write_text(root, "json/1_plotQA.json", json.dumps([
        mlvu_record("m.mp4", answer="Three", candidates=("Six", "Three", "Three", "Eight")),
    ]))
    write_text(root, "json/2_needle.json", json.dumps([
        mlvu_record("n.mp4", answer="Catching a flying drone quadcopter", qtype="findNeedle",
                    candidates=("Fishing", "Catching the drone", "Launching the drone", "Sunbathing")),
    ]))
    write_text(root, "json/7_topic_reasoning.json", json.dumps([
        mlvu_record("t.mp4", answer="", candidates=("", "", "", ""), qtype="topic_reasoning"),
    ]))
    touch(root, "video/1_plotQA/m.mp4")
    touch(root, "video/2_needle/n.mp4")
    touch(root, "video/7_topic_reasoning/t.mp4")

    data = get_benchmark("mlvu").read(tmp_path)
    assert not data.bad
    plot, needle, topic = data.samples
    assert (plot.answer_index, plot.answer) == (2, "Three")
    assert (needle.answer_index, needle.answer) == (None, None)
    assert topic.answer_index == 3 and topic.options == ("", "", "", "")
    assert "takes the last" in plot.meta["answer_rule"] and "answer_rule" in needle.meta
    assert "answer_rule" in topic.meta
    # B names the same text as C, yet only C is right; the needle row is wrong whatever is predicted
    assert [prediction_record(plot, "uniform", p)["correct"] for p in "ABCD"] == [False, False, True, False]
    assert not any(prediction_record(needle, "uniform", p)["correct"] for p in "ABCD")
