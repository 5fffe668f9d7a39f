"""Tests of hfs.pipeline.evaluation.scoring and each benchmark's breakdown, on hand-made prediction records."""

from __future__ import annotations

import json

import pytest

from hfs.manifests import QASample
from hfs.manifests.benchmarks import Outcome, Skip, cells_by
from hfs.pipeline.evaluation.scoring import (
    NO_PREDICTION,
    ScoringError,
    comparison_rows,
    outcomes_by_selector,
    headline_lines,
    note_lines,
    plain_table,
    prediction_index,
    prediction_record,
    score_benchmark,
)


def pred(sample_id, correct, selector="hfs", prediction=None, **meta):
    """A prediction record with the sample's meta flat on it."""
    return {"sample_id": sample_id, "selector": selector, "prediction": prediction, "correct": correct, **meta}


def cell(accuracy, n, skipped=0, **reasons):
    """The expected score cell."""
    return {"accuracy": accuracy, "correct": round(accuracy * n) if accuracy is not None else 0, "n": n,
            "skipped": skipped, "skipped_by_reason": reasons}


# --------------------------------------------------------------------------- NExT-QA


def nextqa_predictions(selector="hfs"):
    """CW 1/2, CH 1/1, TN 0/1, TP 1/1, DC 1/1: causal 2/3, temporal 1/2, descriptive 1/1."""
    rows = [("CW", True), ("CW", False), ("CH", True), ("TN", False), ("TP", True), ("DC", True)]
    return [pred(f"v_{i}", ok, selector, type=t, group={"C": "causal", "T": "temporal", "D": "descriptive"}[t[0]])
            for i, (t, ok) in enumerate(rows)]


def test_nextqa_types_and_groups_with_skips_counted_where_they_belong():
    skipped = [{"sample_id": "v_9", "reason": "missing video", "type": "DL", "group": "descriptive"},
               {"sample_id": None, "reason": "bad row"}]
    agg = score_benchmark("nextqa", nextqa_predictions(), skipped)["selectors"]["hfs"]

    assert agg["overall"] == cell(4 / 6, 6, 2, **{"bad row": 1, "missing video": 1})
    assert agg["by_group"] == {
        "causal": cell(2 / 3, 3),
        "temporal": cell(1 / 2, 2),
        "descriptive": cell(1.0, 1, 1, **{"missing video": 1}),  # the bad row has no group: overall only
    }
    assert list(agg["by_type"]) == ["CW", "CH", "TN", "TP", "DC", "DL"]  # published order, types present
    assert agg["by_type"]["TP"] == cell(1.0, 1) and agg["by_type"]["TN"] == cell(0.0, 1)
    assert agg["by_type"]["DL"] == cell(None, 0, 1, **{"missing video": 1})
    # eval_mc.py folds TP into TN.
    assert "TP" not in agg["by_official_type"] and agg["by_official_type"]["TN"] == cell(1 / 2, 2)


def test_group_is_derived_from_the_type_when_meta_lacks_it():
    records = [pred("a", True, type="TC"), pred("b", False, type="DO")]
    agg = score_benchmark("nextqa", records)["selectors"]["hfs"]
    assert agg["by_group"] == {"temporal": cell(1.0, 1), "descriptive": cell(0.0, 1)}


# --------------------------------------------------------------------------- Video-MME


def test_videomme_durations_in_both_subtitle_settings():
    records = []
    for sub in (False, True):
        outcomes = {"short": [True, True], "medium": [True, False], "long": [False, False]}
        if sub:
            outcomes["long"] = [True, False]  # subtitles help on long videos here
        for duration, oks in outcomes.items():
            for i, ok in enumerate(oks):
                records.append(pred(f"{duration}-{i}", ok, subtitles=sub, duration=duration,
                                    task_type="Counting Problem", domain="Knowledge"))
    skipped = [{"sample_id": "long-9", "reason": "missing video", "duration": "long"},
               {"sample_id": "short-9", "reason": "subtitle error", "duration": "short", "subtitles": True}]

    agg = score_benchmark("videomme", records, skipped)["selectors"]["hfs"]

    without, with_ = agg["without_subtitles"], agg["with_subtitles"]
    assert without["by_duration"] == {"short": cell(1.0, 2), "medium": cell(0.5, 2),
                                      "long": cell(0.0, 2, 1, **{"missing video": 1})}
    assert without["overall"] == cell(3 / 6, 6, 1, **{"missing video": 1})
    assert with_["by_duration"] == {"short": cell(1.0, 2, 1, **{"subtitle error": 1}), "medium": cell(0.5, 2),
                                    "long": cell(0.5, 2, 1, **{"missing video": 1})}
    assert with_["overall"]["accuracy"] == 4 / 6 and with_["overall"]["skipped"] == 2
    assert without["by_task_type"]["Counting Problem"]["n"] == 6


def test_videomme_without_subtitle_runs_reports_one_setting():
    agg = score_benchmark("videomme", [pred("q", True, duration="short")])["selectors"]["hfs"]
    assert list(agg) == ["without_subtitles"]


# --------------------------------------------------------------------------- LongVideoBench


def test_longvideobench_duration_groups_and_categories():
    rows = [(15, "S2E", True), (15, "S2E", False), (60, "T3O", True), (600, "S2E", True), (3600, "T3O", False)]
    records = [pred(f"q{i}", ok, duration_group=g, question_category=c) for i, (g, c, ok) in enumerate(rows)]
    skipped = [{"sample_id": "q9", "reason": "extraction error", "duration_group": 600, "question_category": "E2O"}]

    agg = score_benchmark("longvideobench", records, skipped)["selectors"]["hfs"]
    assert list(agg) == ["without_subtitles"]  # no run with subtitles
    agg = agg["without_subtitles"]

    assert list(agg["by_duration_group"]) == ["15", "60", "600", "3600"]  # numeric order, not text order
    assert agg["by_duration_group"]["15"] == cell(0.5, 2)
    assert agg["by_duration_group"]["600"] == cell(1.0, 1, 1, **{"extraction error": 1})
    assert agg["by_question_category"] == {"E2O": cell(None, 0, 1, **{"extraction error": 1}),
                                           "S2E": cell(2 / 3, 3), "T3O": cell(0.5, 2)}
    assert agg["overall"] == cell(3 / 5, 5, 1, **{"extraction error": 1})


def test_longvideobench_scores_the_two_subtitle_settings_apart():
    # the same 10 questions: 3 right without subtitles, 9 right with them; one video missing
    groups = [15, 15, 60, 60, 600, 600, 600, 3600, 3600, 3600]
    records = [pred(f"q{i}", i < 3, duration_group=g, question_category="S2E") for i, g in enumerate(groups)]
    records += [pred(f"q{i}", i < 9, duration_group=g, question_category="S2E", subtitles=True)
                for i, g in enumerate(groups)]
    skipped = [{"sample_id": "q10", "reason": "missing video", "duration_group": 600}]

    result = score_benchmark("longvideobench", records, skipped)
    agg = result["selectors"]["hfs"]

    assert list(agg) == ["without_subtitles", "with_subtitles"]
    assert agg["without_subtitles"]["overall"] == cell(0.3, 10, 1, **{"missing video": 1})
    assert agg["with_subtitles"]["overall"] == cell(0.9, 10, 1, **{"missing video": 1})  # counted in both
    assert agg["with_subtitles"]["by_duration_group"]["3600"] == cell(2 / 3, 3)
    assert result["headline"]["hfs"] == {**agg["without_subtitles"]["overall"], "of": None}  # not 0.6 over 20
    table = {row[0]: row[1:] for row in comparison_rows(result)[1]}
    assert table["overall (w/o subs)"] == ["30.0 (10)"] and table["overall (w/ subs)"] == ["90.0 (10)"]
    assert table["≤600 s (w/ subs)"] == ["100.0 (3)"]


# --------------------------------------------------------------------------- MLVU


def test_mlvu_m_avg_is_the_mean_over_tasks_not_over_questions():
    # plotQA: 3 of 4 right; needle: 0 of 1. Per question: 3/5 = 0.6. Per task: (0.75 + 0) / 2 = 0.375.
    records = [pred(f"p{i}", ok, task="plotQA") for i, ok in enumerate([True, True, True, False])]
    records.append(pred("n0", False, task="needle"))

    agg = score_benchmark("mlvu", records)["selectors"]["hfs"]

    assert agg["m_avg"]["accuracy"] == pytest.approx(0.375)
    assert agg["mean_over_questions"]["accuracy"] == pytest.approx(0.6)
    assert agg["by_task"]["plotQA"] == cell(0.75, 4)
    assert agg["m_avg"]["n"] == 5 and agg["m_avg"]["groups_scored"] == 2
    assert agg["m_avg"]["groups_unscored"] == ["ego", "count", "order", "anomaly_reco", "topic_reasoning"]


def test_an_m_avg_over_fewer_than_the_7_tasks_says_so():
    from hfs.manifests.benchmarks.mlvu import TASKS

    partial = score_benchmark("mlvu", [pred("p0", True, task="plotQA"), pred("n0", False, task="needle")])
    assert partial["selectors"]["hfs"]["m_avg"]["partial"] is True
    assert note_lines(partial) == ["hfs: M-Avg is the mean over 2 of 7 tasks (none scored: ego, count, order, "
                                   "anomaly_reco, topic_reasoning), not MLVU's published 7-task M-Avg"]
    full = score_benchmark("mlvu", [pred(f"q{i}", True, task=t) for i, t in enumerate(TASKS)])
    assert full["selectors"]["hfs"]["m_avg"]["partial"] is False
    assert note_lines(full) == []
    assert note_lines(score_benchmark("nextqa", [pred("a", True, type="CW")])) == []  # no notes of its own


def test_mlvu_task_with_only_skips_is_not_counted_as_zero():
    records = [pred("p0", True, task="plotQA")]
    skipped = [{"sample_id": "e0", "reason": "missing video", "task": "ego"}, {"reason": "bad row"}]
    result = score_benchmark("mlvu", records, skipped)
    agg = result["selectors"]["hfs"]
    assert agg["m_avg"]["accuracy"] == 1.0
    assert "ego" in agg["m_avg"]["groups_unscored"]
    assert agg["m_avg"]["skipped_by_reason"] == {"bad row": 1, "missing video": 1}
    assert result["headline"]["hfs"] == {**agg["m_avg"], "of": None}  # N not given


# --------------------------------------------------------------------------- cells


def test_cells_by_orders_numbers_numerically_and_keeps_unplaced_questions_visible():
    outcomes = [Outcome("a", True, {"g": 100}), Outcome("b", False, {"g": 20}), Outcome("c", True, {"g": "x"}),
                Outcome("d", True, {})]
    skips = [Skip("e", "missing video", {"g": 20}), Skip(None, "bad row", {})]
    cells = cells_by(outcomes, skips, lambda m: m.get("g"))
    assert list(cells) == ["20", "100", "unknown", "x"]
    assert cells["20"] == cell(0.0, 1, 1, **{"missing video": 1})
    assert cells["unknown"] == cell(1.0, 1)  # a scored question without the key still shows
    assert sum(c["skipped"] for c in cells.values()) == 1  # the bad row is in no group


# --------------------------------------------------------------------------- records, skips, selectors


@pytest.mark.parametrize(("value", "index"), [(2, 2), ("C", 2), ("(c)", 2), ("B.", 1), ("3", 3), (None, None)])
def test_prediction_as_index_or_letter(value, index):
    assert prediction_index(value) == index


@pytest.mark.parametrize("value", [True, -1, "maybe", 1.5])
def test_prediction_that_is_neither_index_nor_letter_is_refused(value):
    with pytest.raises(ScoringError):
        prediction_index(value)


def test_prediction_record_from_a_sample_scores_back():
    sample = QASample("001-1", "vid", "How many?", ("7", "8", "9", "10"), "8", 1, meta={"duration": "short"})
    right, wrong = prediction_record(sample, "hfs", 1), prediction_record(sample, "hfs", "C", subtitles=True)
    assert (right["prediction"], right["correct"], right["duration"]) == ("B", True, "short")
    assert (wrong["prediction"], wrong["correct"], wrong["subtitles"]) == ("C", False, True)
    assert prediction_record(sample, "hfs", None)["correct"] is False
    agg = score_benchmark("videomme", [right, wrong])["selectors"]["hfs"]
    assert agg["without_subtitles"]["by_duration"]["short"]["accuracy"] == 1.0
    assert agg["with_subtitles"]["overall"]["accuracy"] == 0.0


def test_records_are_checked():
    with pytest.raises(ScoringError, match="needs a 'selector'"):
        outcomes_by_selector([{"sample_id": "a", "correct": True}])
    with pytest.raises(ScoringError, match="'correct' must be true or false"):
        outcomes_by_selector([pred("a", "yes")])
    with pytest.raises(ScoringError, match="disagree with correct"):
        outcomes_by_selector([pred("a", True, prediction="B", answer_index=0)])
    with pytest.raises(ScoringError, match="second prediction"):
        outcomes_by_selector([pred("a", True), pred("a", False)])
    # the same question in both Video-MME settings is two predictions, not a duplicate
    assert len(outcomes_by_selector([pred("a", True), pred("a", False, subtitles=True)])["hfs"]) == 2
    (outcome,) = outcomes_by_selector([{"question_id": 7, "selector": "u", "prediction": "b", "correct": False,
                                        "meta": {"task": "ego"}, "answer_index": 0}])["u"]
    assert (outcome.sample_id, outcome.meta["task"], outcome.meta["prediction_index"]) == ("7", "ego", 1)
    with pytest.raises(ScoringError, match="needs a 'reason'"):
        score_benchmark("nextqa", [pred("a", True, type="CW")], [{"sample_id": "b"}])


def test_skips_per_selector_expected_questions_and_prediction_wins():
    samples = [QASample(f"v_{i}", "vid", "q?", ("a", "b"), "a", 0, meta={"type": "CW", "group": "causal"})
               for i in range(4)]
    records = [pred("v_0", True, "uniform", type="CW"), pred("v_1", False, "uniform", type="CW"),
               pred("v_0", True, "hfs", type="CW")]
    skipped = [{"sample_id": "v_2", "reason": "missing video", "type": "CW"},  # every selector
               {"sample_id": "v_1", "reason": "extraction error", "selector": "hfs", "type": "CW"},
               {"sample_id": "v_0", "reason": "extraction error", "selector": "uniform"}]  # but uniform scored v_0

    result = score_benchmark("nextqa", records, skipped, expected=samples)

    uniform, hfs = result["selectors"]["uniform"]["overall"], result["selectors"]["hfs"]["overall"]
    assert (uniform["n"], uniform["skipped_by_reason"]) == (2, {"missing video": 1, NO_PREDICTION: 1})
    assert (hfs["n"], hfs["skipped_by_reason"]) == (1, {"extraction error": 1, "missing video": 1, NO_PREDICTION: 1})
    assert result["selectors"]["hfs"]["by_type"]["CW"]["skipped"] == 3  # the expected sample's meta places it
    json.dumps(result)  # JSON-able as it is


def test_the_headline_says_over_n_of_n_questions_and_why_the_rest_were_skipped():
    records = [pred("a", True, "uniform", duration="short"), pred("b", False, "uniform", duration="long"),
               pred("a", True, "hfs", duration="short")]
    skipped = [{"reason": "bad row"}, {"sample_id": "c", "reason": "missing video", "duration": "long"},
               {"sample_id": "b", "reason": "extraction error", "selector": "hfs"}]

    result = score_benchmark("videomme", records, skipped, total=4)

    uniform, hfs = result["headline"]["uniform"], result["headline"]["hfs"]
    assert (uniform["n"], uniform["skipped"], uniform["of"]) == (2, 2, 4)
    assert uniform == {**result["selectors"]["uniform"]["without_subtitles"]["overall"], "of": 4}
    assert "of" not in result["selectors"]["uniform"]["without_subtitles"]["overall"]  # a copy, not the cell
    assert headline_lines(result) == [
        "uniform: overall (w/o subs) 50.0 % over 2 of 4 questions (2 skipped: 1 bad row, 1 missing video)",
        "hfs: overall (w/o subs) 100.0 % over 1 of 4 questions "
        "(3 skipped: 1 bad row, 1 extraction error, 1 missing video)",
    ]
    mlvu = score_benchmark("mlvu", [pred("p0", True, task="plotQA"), pred("n0", False, task="needle")], total=2)
    assert headline_lines(mlvu) == ["hfs: M-Avg 50.0 % over 2 of 2 questions"]
    unknown = score_benchmark("nextqa", [pred("a", True, type="CW")])
    assert headline_lines(unknown) == ["hfs: overall 100.0 % over 1 question"]  # N not given


def test_comparison_rows_put_selectors_side_by_side():
    records = nextqa_predictions("uniform") + [
        {**r, "correct": True} for r in nextqa_predictions("hfs")]
    scores = score_benchmark("nextqa", records, [{"reason": "bad row"}])

    header, rows = comparison_rows(scores)

    assert header == ["NExT-QA", "uniform", "hfs"]
    table = {row[0]: row[1:] for row in rows}
    assert table["Acc_C (causal)"] == ["66.7 (3)", "100.0 (3)"]
    assert table["Bef&Aft (TN+TP)"] == ["50.0 (2)", "100.0 (2)"]  # eval_mc.py counts TP as TN
    assert table["overall"] == ["66.7 (6)", "100.0 (6)"]
    assert table["skipped"] == ["1", "1"]
    # eval_mc.py's columns in its order (those scored), then its groups, then Acc
    assert list(table) == ["Why (CW)", "How (CH)", "Bef&Aft (TN+TP)", "Cnt (DC)", "Acc_C (causal)",
                           "Acc_T (temporal)", "Acc_D (descriptive)", "overall", "skipped"]
    assert "100.0 (6)" in plain_table(header, rows).splitlines()[-2]


def test_comparison_rows_for_videomme_and_mlvu_show_their_headline_metrics():
    vm = score_benchmark("videomme", [pred("a", True, duration="long"),
                                      pred("a", False, duration="long", subtitles=True),
                                      pred("a", True, "uniform", duration="long")])
    header, rows = comparison_rows(vm)
    table = {row[0]: row[1:] for row in rows}
    assert table["long (w/o subs)"] == ["100.0 (1)", "100.0 (1)"]
    assert table["overall (w/ subs)"] == ["0.0 (1)", "—"]  # uniform has no with-subtitles run
    mlvu = score_benchmark("mlvu", [pred("p0", True, task="plotQA"), pred("n0", False, task="needle")])
    _, rows = comparison_rows(mlvu)
    assert rows[-2] == ["M-Avg", "50.0 (2)"]
