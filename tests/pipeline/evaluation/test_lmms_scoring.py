"""Our scorer (pipeline/evaluation/scoring.py and each benchmark's `aggregate`) against lmms-eval's own
accounting, on the same predictions.

lmms-eval is not installed; its ``process_results`` and aggregation functions are vendored below as
small functions, cut to the numbers they log or return (source: EvolvingLMMs-Lab/lmms-eval at commit
75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3, lmms_eval/tasks/{videomme,longvideobench,mlvu,nextqa}/utils.py),
and NExT-QA's official table, ``accuracy_metric`` of doc-doc/NExT-QA ``eval_mc.py`` (commit
6b92588ab4496268fa1caab9414a8b998ee063c5). Both sides get the same parsed letter per question (the
parsers are tested against lmms-eval's in test_lmms_parsers.py); every number lmms-eval prints must
be ours: same counts, same percentage.
"""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from hfs.manifests import QASample
from hfs.pipeline.evaluation.lmms_parsers import parse_answer
from hfs.pipeline.evaluation.scoring import prediction_record, score_benchmark

LETTERS = "ABCDE"
RESPONSES = ["A", "B", "C", "D", "E", "(B)", "The answer is (C).", "b", "", "I think it is D", "A man, so C",
             "no idea at all", "B. Eight."]

# --------------------------------------------------------------------------- vendored lmms-eval

VIDEOMME_VIDEO_TYPE = ["short", "medium", "long"]
VIDEOMME_CATEGORIES = ["Knowledge", "Film & Television", "Sports Competition", "Artistic Performance", "Life Record",
                       "Multilingual"]
VIDEOMME_SUB_CATEGORIES = [
    "Humanity & History", "Literature & Art", "Biology & Medicine", "Finance & Commerce", "Astronomy", "Geography",
    "Law", "Life Tip", "Technology", "Animation", "Movie & TV Show", "Documentary", "News Report", "Esports",
    "Basketball", "Football", "Athletics", "Other Sports", "Stage Play", "Magic Show", "Variety Show", "Acrobatics",
    "Handicraft", "Food", "Fashion", "Daily Life", "Travel", "Pet & Animal", "Exercise", "Multilingual"]
VIDEOMME_DOMAIN_OF = {sub: domain for domain, n, start in (  # the published sub-categories of each domain, in order
    ("Knowledge", 9, 0), ("Film & Television", 4, 9), ("Sports Competition", 5, 13), ("Artistic Performance", 5, 18),
    ("Life Record", 6, 23), ("Multilingual", 1, 29)) for sub in VIDEOMME_SUB_CATEGORIES[start:start + n]}
VIDEOMME_TASK_CATEGORIES = [
    "Temporal Perception", "Spatial Perception", "Attribute Perception", "Action Recognition", "Object Recognition",
    "OCR Problems", "Counting Problem", "Temporal Reasoning", "Spatial Reasoning", "Action Reasoning",
    "Object Reasoning", "Information Synopsis"]


def lmms_videomme_process_results(doc, pred_ans):
    """videomme/utils.py ``videomme_process_results``, from the parsed letter on."""
    return {"duration": doc["duration"], "category": doc["domain"], "sub_category": doc["sub_category"],
            "task_category": doc["task_type"], "pred_answer": pred_ans, "answer": doc["answer"]}


def lmms_videomme_aggregate_results(results):
    """videomme/utils.py ``videomme_aggregate_results``: what it logs, as {label: (correct, answered)}
    (it logs 100 * correct / answered, 0 when none answered), and "Overall"."""
    category2score = {}
    for video_type in VIDEOMME_VIDEO_TYPE:
        for category in VIDEOMME_CATEGORIES:
            for sub_category in VIDEOMME_SUB_CATEGORIES:
                for task_category in VIDEOMME_TASK_CATEGORIES:
                    category2score[f"{video_type}_{category}_{sub_category}_{task_category}"] = {"correct": 0,
                                                                                                 "answered": 0}
    for result in results:
        key = f"{result['duration']}_{result['category']}_{result['sub_category']}_{result['task_category']}"
        category2score[key]["answered"] += 1
        category2score[key]["correct"] += result["pred_answer"] == result["answer"]
    logged = {}
    for kind, names in (("duration", VIDEOMME_VIDEO_TYPE), ("domain", VIDEOMME_CATEGORIES),
                        ("sub_category", VIDEOMME_SUB_CATEGORIES), ("task_type", VIDEOMME_TASK_CATEGORIES)):
        for name in names:
            total_correct = total_answered = 0
            for k, v in category2score.items():
                if name in k:  # substring match, as there
                    total_correct += v["correct"]
                    total_answered += v["answered"]
            logged[(kind, name)] = (total_correct, total_answered)
    logged["Overall"] = (sum(v["correct"] for v in category2score.values()),
                         sum(v["answered"] for v in category2score.values()))
    return logged


def lmms_longvideobench_process_results(doc, parsed_pred):
    """longvideobench/utils.py ``longvideobench_process_results``, from the parsed letter on."""
    return {"id": doc["id"], "duration_group": doc["duration_group"], "question_category": doc["question_category"],
            "answer": chr(ord("A") + doc["correct_choice"]), "parsed_pred": parsed_pred}


def lmms_longvideobench_aggregate_results(results):
    """longvideobench/utils.py ``longvideobench_aggregate_results`` (with ``evaluate_longvideobench`` and
    ``calculate_ins_level_acc``): its ``printable_results``."""
    subset_to_eval_samples = defaultdict(list)
    for result in results:
        subset_to_eval_samples[result["duration_group"]].append(result)
        subset_to_eval_samples[result["question_category"]].append(result)
    evaluation_result = {}
    for subset, samples in subset_to_eval_samples.items():
        correct = sum(1 for s in samples if s["answer"] == s["parsed_pred"])
        evaluation_result[subset] = {"acc": correct / len(samples), "num_example": len(samples)}
    printable = {name: {"num": int(r["num_example"]), "acc": round(r["acc"], 5)} for name, r in evaluation_result.items()}
    acc = sum(r["acc"] * r["num_example"] for r in evaluation_result.values())
    ins_num = sum(r["num_example"] for r in evaluation_result.values())
    printable["Overall"] = {"num": ins_num, "acc": round(acc / ins_num if ins_num else 0, 5)}
    return printable


MLVU_DEV_TASK_TYPES = {"anomaly_reco", "count", "ego", "needle", "order", "plotQA", "topic_reasoning"}


def lmms_mlvu_aggregate_results_dev(results):
    """mlvu/utils.py ``mlvu_aggregate_results_dev`` (results: ``mlvu_process_results``' dicts):
    ({task: accuracy in %}, the average over the 7 tasks)."""
    category2score = {t: {"correct": 0, "answered": 0} for t in MLVU_DEV_TASK_TYPES}
    for result in results:
        category2score[result["task_type"]]["answered"] += 1
        category2score[result["task_type"]]["correct"] += result["pred_answer"] == result["answer"]
    scores = {}
    for task_cate in MLVU_DEV_TASK_TYPES:
        total_correct = total_answered = 0
        for k, v in category2score.items():
            if task_cate in k:
                total_correct += v["correct"]
                total_answered += v["answered"]
        scores[task_cate] = 100 * total_correct / total_answered if total_answered > 0 else 0
    return scores, sum(scores.values()) / len(MLVU_DEV_TASK_TYPES)


def lmms_nextqa_mc_exact_match(doc, parsed_pred):
    """nextqa/utils.py ``nextqa_mc_process_results``; the task aggregates ``exact_match`` by mean."""
    return parsed_pred == LETTERS[doc["answer"]]


def eval_mc_accuracy_metric(rows, preds):
    """doc-doc/NExT-QA eval_mc.py ``accuracy_metric``: (group_acc, group_cnt, all_acc, all_cnt) for the
    columns it prints (Why, How, Bef&Aft, When, Cnt, Loc, Other, Acc_C, Acc_T, Acc_D) and "Acc"."""
    group = {"CW": [], "CH": [], "TN": [], "TC": [], "DC": [], "DL": [], "DO": []}
    for row in rows:
        qtype = str(row["type"])
        if qtype == "TP":
            qtype = "TN"
        group[qtype].append(f"{row['video']}_{row['qid']}")
    group_acc = dict.fromkeys(group, 0)
    group_cnt = dict.fromkeys(group, 0)
    overall_acc = {"C": 0, "T": 0, "D": 0}
    overall_cnt = {"C": 0, "T": 0, "D": 0}
    all_acc = all_cnt = 0
    for qtype, qns_ids in group.items():
        cnt = acc = 0
        for qid in qns_ids:
            cnt += 1
            if preds[qid]["answer"] == preds[qid]["prediction"]:
                acc += 1
        group_cnt[qtype] = cnt
        group_acc[qtype] += acc
        overall_acc[qtype[0]] += acc
        overall_cnt[qtype[0]] += cnt
        all_acc += acc
        all_cnt += cnt
    for qtype, value in overall_acc.items():
        group_acc[qtype] = value
        group_cnt[qtype] = overall_cnt[qtype]
    return group_acc, group_cnt, all_acc, all_cnt


# --------------------------------------------------------------------------- helpers


def assert_cell(cell, correct, answered):
    """Our cell has lmms-eval's counts and, to the last digit it prints, its percentage."""
    assert (cell["correct"], cell["n"]) == (correct, answered)
    assert f"{100 * cell['accuracy']:.1f}" == f"{100 * correct / answered:.1f}"
    assert 100 * cell["accuracy"] == pytest.approx(100 * correct / answered, rel=1e-12)


def letter_of(parsed: str) -> str | None:
    """The prediction our record takes: lmms-eval's "" (no letter) is no prediction."""
    return parsed or None


# --------------------------------------------------------------------------- tests


def test_videomme_matches_videomme_aggregate_results():
    rng = random.Random(0)
    samples, lmms = [], []
    for i in range(400):
        # Sub-categories within their domain, as published: lmms-eval groups by substring ("Multilingual"
        # in a key counts for the domain and for the sub-category), which is the same grouping only then.
        sub_category = rng.choice(VIDEOMME_SUB_CATEGORIES)
        doc = {"duration": rng.choice(VIDEOMME_VIDEO_TYPE), "domain": VIDEOMME_DOMAIN_OF[sub_category],
               "sub_category": sub_category, "task_type": rng.choice(VIDEOMME_TASK_CATEGORIES),
               "answer": rng.choice("ABCD")}
        options = tuple(f"{c}. option {c}" for c in "ABCD")
        sample = QASample(f"{i:03d}-1", "", "q?", options, options["ABCD".index(doc["answer"])],
                          "ABCD".index(doc["answer"]), "", {k: doc[k] for k in ("duration", "domain", "sub_category",
                                                                                  "task_type")})
        parsed = parse_answer("videomme", rng.choice(RESPONSES), options).letter
        lmms.append(lmms_videomme_process_results(doc, parsed))
        samples.append(prediction_record(sample, "hfs", letter_of(parsed)))
    ours = score_benchmark("videomme", samples)["selectors"]["hfs"]["without_subtitles"]
    logged = lmms_videomme_aggregate_results(lmms)
    assert_cell(ours["overall"], *logged.pop("Overall"))
    groups = {"duration": "by_duration", "domain": "by_domain", "sub_category": "by_sub_category",
              "task_type": "by_task_type"}
    for (kind, name), (correct, answered) in logged.items():
        if answered:
            assert_cell(ours[groups[kind]][name], correct, answered)
        else:
            assert name not in ours[groups[kind]]  # lmms-eval logs 0 for an empty group; we show none
    for kind, key in groups.items():
        assert set(ours[key]) <= {name for (k, name), (_, a) in logged.items() if k == kind and a}


def test_longvideobench_matches_longvideobench_aggregate_results():
    rng = random.Random(1)
    records, lmms = [], []
    categories = ["S2E", "T3O", "E2O", "SOS", "TOS"]
    for i in range(300):
        n_options = rng.choice((4, 5))
        options = tuple(f"option {k}" for k in range(n_options))
        doc = {"id": f"q{i}", "duration_group": rng.choice((15, 60, 600, 3600)),
               "question_category": rng.choice(categories), "correct_choice": rng.randrange(n_options)}
        sample = QASample(doc["id"], "", "q?", options, options[doc["correct_choice"]], doc["correct_choice"], "",
                          {"duration_group": doc["duration_group"], "question_category": doc["question_category"]})
        parsed = parse_answer("longvideobench", rng.choice(RESPONSES), options, rng=random.Random(i)).letter
        lmms.append(lmms_longvideobench_process_results(doc, parsed))
        records.append(prediction_record(sample, "hfs", letter_of(parsed)))
    ours = score_benchmark("longvideobench", records)["selectors"]["hfs"]["without_subtitles"]
    printable = lmms_longvideobench_aggregate_results(lmms)
    overall = printable.pop("Overall")
    # lmms-eval's "Overall" weighs the duration groups and the categories together: every question
    # counts twice ("num" is 2 N), which leaves the accuracy that of all questions.
    assert overall["num"] == 2 * ours["overall"]["n"]
    assert round(ours["overall"]["accuracy"], 5) == overall["acc"]
    for name, cell in printable.items():
        part = ours["by_duration_group"] if isinstance(name, int) else ours["by_question_category"]
        assert part[str(name)]["n"] == cell["num"] and round(part[str(name)]["accuracy"], 5) == cell["acc"]
    assert len(ours["by_duration_group"]) + len(ours["by_question_category"]) == len(printable)


def mlvu_records(rng, tasks, n):
    records, lmms = [], []
    for i in range(n):
        task = rng.choice(tasks)
        n_options = rng.choice((4, 4, 6))  # a few with E/F: lmms-eval's A-D parser never gets those right
        options = tuple(f"option {k}" for k in range(n_options))
        answer = rng.randrange(n_options)
        sample = QASample(f"{task}_{i}", "", "q?", options, options[answer], answer, "", {"task": task})
        parsed = parse_answer("mlvu", rng.choice(RESPONSES + ["E) x", "F"]), options).letter
        lmms.append({"task_type": task, "pred_answer": parsed, "answer": LETTERS[answer] if answer < 5 else "F"})
        records.append(prediction_record(sample, "hfs", letter_of(parsed)))
    return records, lmms


def test_mlvu_matches_mlvu_aggregate_results_dev():
    records, lmms = mlvu_records(random.Random(2), sorted(MLVU_DEV_TASK_TYPES), 350)
    ours = score_benchmark("mlvu", records)["selectors"]["hfs"]
    scores, m_avg = lmms_mlvu_aggregate_results_dev(lmms)
    for task, percent in scores.items():
        cell = ours["by_task"][task]
        assert f"{100 * cell['accuracy']:.1f}" == f"{percent:.1f}"
        assert 100 * cell["accuracy"] == pytest.approx(percent, rel=1e-12)
    assert not ours["m_avg"]["partial"]
    assert 100 * ours["m_avg"]["accuracy"] == pytest.approx(m_avg, rel=1e-12)
    assert f"{100 * ours['m_avg']['accuracy']:.1f}" == f"{m_avg:.1f}"
    assert ours["m_avg"]["zero_filled_accuracy"] == ours["m_avg"]["accuracy"]


def test_mlvu_partial_run_differs_by_design_and_says_lmms_evals_number():
    # lmms-eval divides by its 7 tasks whatever was scored (an absent task counts 0 %); our M-Avg is
    # the mean over the scored tasks, flagged partial; zero_filled_accuracy is lmms-eval's number.
    records, lmms = mlvu_records(random.Random(3), ["plotQA", "needle", "ego"], 120)
    m_avg = score_benchmark("mlvu", records)["selectors"]["hfs"]["m_avg"]
    _, lmms_m_avg = lmms_mlvu_aggregate_results_dev(lmms)
    assert m_avg["partial"] and m_avg["groups_scored"] == 3
    assert 100 * m_avg["zero_filled_accuracy"] == pytest.approx(lmms_m_avg, rel=1e-12)
    assert m_avg["zero_filled_accuracy"] == pytest.approx(m_avg["accuracy"] * 3 / 7, rel=1e-12)


def test_nextqa_matches_lmms_eval_exact_match_and_eval_mc():
    rng = random.Random(4)
    rows, records, preds, exact = [], [], {}, []
    types = ["CW", "CH", "TN", "TC", "TP", "DC", "DL", "DO"]
    for i in range(300):
        row = {"video": 1000 + i // 3, "qid": i % 3, "type": rng.choice(types), "answer": rng.randrange(5)}
        options = tuple(f"option number {k}" for k in range(5))
        sample = QASample(f"{row['video']}_{row['qid']}", "", "q?", options, options[row["answer"]], row["answer"], "",
                          {"type": row["type"], "group": {"C": "causal", "T": "temporal", "D": "descriptive"}[
                              row["type"][0]], "qid": row["qid"], "video": str(row["video"])})
        parsed = parse_answer("nextqa", rng.choice(RESPONSES), options, rng=random.Random(i)).letter
        rows.append(row)
        exact.append(lmms_nextqa_mc_exact_match(row, parsed))
        preds[sample.sample_id] = {"answer": row["answer"], "prediction": LETTERS.index(parsed)}
        records.append(prediction_record(sample, "hfs", letter_of(parsed)))
    ours = score_benchmark("nextqa", records)["selectors"]["hfs"]
    assert_cell(ours["overall"], sum(exact), len(exact))  # lmms-eval: mean of exact_match
    group_acc, group_cnt, all_acc, all_cnt = eval_mc_accuracy_metric(rows, preds)
    assert_cell(ours["overall"], all_acc, all_cnt)
    for qtype in ("CW", "CH", "TN", "TC", "DC", "DL", "DO"):
        assert_cell(ours["by_official_type"][qtype], group_acc[qtype], group_cnt[qtype])
    for code, group in {"C": "causal", "T": "temporal", "D": "descriptive"}.items():
        assert_cell(ours["by_group"][group], group_acc[code], group_cnt[code])
