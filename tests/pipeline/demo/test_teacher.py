"""The stand-in teacher: option shuffling, the frames it is fitted on, what a fit saves (the demo's
whole fit runs in tests/stages/test_demo.py)."""

from __future__ import annotations

import random

import pytest
import torch

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


def test_k_at_follows_the_schedule_by_fraction_of_the_steps():
    from hfs.pipeline.demo.teacher import K_SCHEDULE, k_at

    assert [k_at(K_SCHEDULE, s, 100) for s in (0, 24, 25, 49, 50, 74, 75, 99)] == [1, 1, 4, 4, 8, 8, 16, 16]
    assert k_at(((2, 0.5), (3, 1.0)), 10, 10) == 3  # past the end: the last k
    assert [k_at(K_SCHEDULE, s, 3) for s in range(3)] == [1, 4, 8]  # step / steps: 0, 1/3, 2/3


def test_render_item_shows_each_answer_bearing_event_and_otherwise_quiet_frames():
    from hfs.pipeline.demo.task import COLOURS, TaskConfig, plan_item
    from hfs.pipeline.demo.teacher import render_item

    for kind in ("colour", "order", "query_shape", "query_order", "query_pair"):
        item = plan_item("train", 3, 0, TaskConfig(kinds=(kind,), n_events=5 if kind == "query_pair" else 3,
                                                   min_gap_s=1.0))
        spec = item.video
        for k in (1, 4, 16):
            frames, times = render_item(item, k, random.Random(k))
            assert frames.dtype == torch.uint8 and frames.shape[1:] == (3, spec.size[1], spec.size[0])
            assert len(frames) == len(times) == max(k, len(item.answer_events)) and times == sorted(times)
            shown = [round(t * spec.fps) for t in times]
            for e in item.answer_events:  # one frame inside every answer-bearing event
                event = spec.events[e]
                assert any(event.start_frame <= i < event.end_frame for i in shown), (kind, k)
                # the JPEG round trip keeps the event's colour on its frame
                frame = frames[next(j for j, i in enumerate(shown) if event.start_frame <= i < event.end_frame)]
                y, x = (int(round(c)) for c in event.centre)
                pixel = frame[:, y, x].int()
                assert (pixel - torch.tensor(COLOURS[event.colour])).abs().max() < 40, (kind, pixel)
            busy = [i for i in shown if any(ev.start_frame <= i < ev.end_frame for ev in spec.events)]
            assert len(busy) <= len(spec.events)  # the rest are quiet frames
            # distractors only while there is room: never more frames than k (or the answer-bearing events)
            spans = {(ev.start_frame, ev.end_frame) for ev in spec.events}
            assert len({next(s for s in spans if s[0] <= i < s[1]) for i in busy}) <= max(k, len(item.answer_events))
    assert torch.equal(render_item(item, 4, random.Random(1))[0], render_item(item, 4, random.Random(1))[0])


def test_fit_teacher_saves_a_teacher_that_answers_by_option_text(tmp_path):
    from hfs.pipeline.demo.task import TaskConfig
    from hfs.pipeline.demo.teacher import fit_teacher
    from hfs.pipeline.model.teachers import load_teacher

    steps = []
    folder = fit_teacher(TaskConfig(kinds=("colour",)), tmp_path / "t", steps=2, batch_size=2, seed=0,
                         progress=steps.append)
    assert steps == [1, 1]
    teacher = load_teacher("qwen2_5_vl", str(folder), lora_r=0)
    assert teacher.answer_scoring == "option_text"
    letter = fit_teacher(TaskConfig(kinds=("colour",)), tmp_path / "l", steps=1, batch_size=2,
                         answer_scoring="letter")
    assert load_teacher("qwen2_5_vl", str(letter), lora_r=0).answer_scoring == "letter"
    with pytest.raises(ValueError, match="answer_scoring must be one of"):
        fit_teacher(TaskConfig(), tmp_path / "x", steps=1, answer_scoring="words")


class _FakeCache:
    """A FeatureCache stand-in: 32 grid frames of one video, frame i filled with grey level 8·i."""

    def __init__(self):
        from torchvision.io import encode_jpeg

        self.jpegs = [encode_jpeg(torch.full((3, 72, 96), 8 * i, dtype=torch.uint8), quality=95).numpy().tobytes()
                      for i in range(32)]
        self.asked = []

    def timestamps(self, video_id):
        return [0.5 * i for i in range(32)]

    def frames(self, video_id, indices):
        self.asked.append(list(indices))
        return [self.jpegs[i] for i in indices]


def test_training_questions_are_shown_their_answer_bearing_cached_frames(tmp_path):
    from types import SimpleNamespace

    from hfs.pipeline.demo.task import TaskConfig
    from hfs.pipeline.demo.teacher import _cached_frames, fit_teacher

    cache = _FakeCache()
    truth = SimpleNamespace(events=[SimpleNamespace(grid_hits=(5, 6)), SimpleNamespace(grid_hits=(20,)),
                                    SimpleNamespace(grid_hits=())])
    sample = SimpleNamespace(sample_id="q0", video_id="v0", question="What colour is the shape that briefly appears?",
                             options=("red", "green", "blue", "yellow", "magenta"), answer_index=2)
    frames, times = _cached_frames(cache, sample, truth, 4, random.Random(0))
    chosen = cache.asked[-1]
    assert len(frames) == 4 and chosen == sorted(chosen) and 20 in chosen and ({5, 6} & set(chosen))
    assert times == [0.5 * i for i in chosen]
    assert [int(f.float().mean().round()) for f in frames] == [8 * i for i in chosen]  # the frames asked for
    cache.asked.clear()
    fit_teacher(TaskConfig(kinds=("colour",)), tmp_path / "t", steps=2, batch_size=4, seed=0,
                training=(cache, [sample], {"q0": truth}))
    assert len(cache.asked) == 2  # 2 of each step's 4 questions are training ones (only one exists: drawn once)
    assert all(20 in asked for asked in cache.asked)


def test_fit_loss_is_the_answer_ce_with_evidence_and_the_uniform_ce_without():
    import math

    from hfs.pipeline.demo.teacher import fit_loss

    z = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, float("-inf")]])
    logp0 = [2 - math.log(math.exp(2) + 2), -math.log(math.exp(2) + 2)]
    logp1 = [1 - math.log(math.e + 1), -math.log(math.e + 1)]
    # question 0 shown its evidence (answer 1), question 1 not: uniform over its 2 options
    expected = (-logp0[1] - 0.5 * (logp1[0] + logp1[1])) / 2
    assert abs(float(fit_loss(z, [1, 0], [True, False])) - expected) < 1e-6
    assert abs(float(fit_loss(z[:1], [0], [True])) + logp0[0]) < 1e-6


def test_render_item_without_evidence_shows_no_answer_bearing_frame():
    from hfs.pipeline.demo.task import TaskConfig, plan_item
    from hfs.pipeline.demo.teacher import render_item

    for kind in ("colour", "query_shape", "order"):
        item = plan_item("train", 5, 0, TaskConfig(kinds=(kind,)))
        spec = item.video
        frames, times = render_item(item, 16, random.Random(0), evidence=False)
        assert len(frames) == 16
        shown = [round(t * spec.fps) for t in times]
        for e in item.answer_events:
            event = spec.events[e]
            assert not any(event.start_frame <= i < event.end_frame for i in shown)
