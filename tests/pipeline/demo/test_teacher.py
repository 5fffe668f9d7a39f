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


def test_fitting_frames_grow_by_the_schedule():
    from hfs.pipeline.demo.teacher import K_SCHEDULE, frames_at

    # K_SCHEDULE: 1 frame for the first 30 % of the steps, then 4
    assert [frames_at(s, 100) for s in (0, 29, 30, 99)] == [1, 1, 4, 4]
    assert frames_at(3, 10, ((2, 0.5), (3, 1.0))) == 2 and frames_at(5, 10, ((2, 0.5), (3, 1.0))) == 3
    assert K_SCHEDULE[-1][1] == 1.0


def test_fitting_frames_show_one_frame_of_every_answer_bearing_event():
    from hfs.pipeline.demo.teacher import fit_frames
    from hfs.pipeline.evaluation.recall import EventTruth, QuestionTruth

    def event(hits):
        return EventTruth(colour="red", shape="circle", start_s=0.0, end_s=1.0, start_frame=0, end_frame=1,
                          grid_hits=tuple(hits))

    truth = QuestionTruth(sample_id="q", split="train", qid=None, video="v.mp4", kind="order", type="TN",
                          question="?", options=("a", "b"), answer_index=0, duration_s=10.0, fps=10.0, n_frames=100,
                          grid_n=16, events=(event([2, 3]), event([9])))
    rng = random.Random(0)
    for k in (1, 2, 4):
        shown = fit_frames(truth, 16, k, rng)
        assert shown == sorted(shown) and len(shown) == max(k, 2) and len(set(shown)) == len(shown)
        assert 9 in shown and len({2, 3} & set(shown)) == 1  # one frame of each event, whatever k
        assert len(set(shown) - {2, 3, 9}) == max(k, 2) - 2  # the rest show no event
