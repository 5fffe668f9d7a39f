"""The stand-in teacher's option shuffling (fitting itself runs in tests/stages/test_demo.py)."""

from __future__ import annotations

import random

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


def test_frames_grow_by_the_schedule():
    from hfs.pipeline.demo.teacher import K_SCHEDULE, frames_at

    # K_SCHEDULE: 1 frame for the first 20 % of the steps, 4 until 50 %, then 8
    assert [frames_at(s, 100) for s in (0, 19, 20, 49, 50, 99)] == [1, 1, 4, 4, 8, 8]
    assert frames_at(3, 10, ((2, 0.5), (3, 1.0))) == 2 and frames_at(5, 10, ((2, 0.5), (3, 1.0))) == 3
    assert K_SCHEDULE[-1][1] == 1.0


def _shows(frame, rgb) -> bool:
    """Whether a decoded frame [3, H, W] holds a patch of (about) colour ``rgb`` (JPEG-tolerant)."""
    target = torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1)
    return bool(((frame.float() - target).abs().amax(0) < 40).sum() >= 20)


def test_rendered_frames_hold_the_answer_bearing_events_and_pad_with_quiet_frames():
    from hfs.pipeline.demo.task import COLOURS, TaskConfig, plan_item
    from hfs.pipeline.demo.teacher import render_frames

    single = plan_item("train", 3, 11, TaskConfig(kinds=("colour",)))
    frames, times = render_frames(single, 4, random.Random(0), longest=448, quality=90)
    width, height = single.video.size
    assert tuple(frames.shape) == (4, 3, height, width) and frames.dtype == torch.uint8
    assert times == sorted(times) and len(times) == 4
    colour = COLOURS[single.video.events[0].colour]
    assert sum(_shows(f, colour) for f in frames) == 1  # one frame inside the event, three event-free ones

    # k = 1 still shows every answer-bearing event: an order question needs two
    order = plan_item("train", 0, 11, TaskConfig(kinds=("order",)))
    frames, _ = render_frames(order, 1, random.Random(0), longest=448, quality=90)
    assert len(frames) == 2
    for event, frame in zip(order.video.events, frames):
        assert _shows(frame, COLOURS[event.colour])

    # query kinds: the named event always, distractors sometimes (so the question must be read)
    query = TaskConfig(kinds=("query_shape",), n_events=3)
    seen_distractor = False
    for i in range(6):
        item = plan_item("train", i, 11, query)
        frames, _ = render_frames(item, 4, random.Random(i), longest=448, quality=90)
        named = item.video.events[item.answer_events[0]]
        assert any(_shows(f, COLOURS[named.colour]) for f in frames)
        others = [e for j, e in enumerate(item.video.events) if j not in item.answer_events]
        seen_distractor |= any(_shows(f, COLOURS[e.colour]) for f in frames for e in others)
    assert seen_distractor


def test_a_fitted_teacher_is_saved_whole_and_loads(tmp_path):
    from hfs.pipeline.demo.task import TaskConfig
    from hfs.pipeline.demo.teacher import fit_teacher
    from hfs.pipeline.model.teachers import load_teacher

    out = fit_teacher(TaskConfig(kinds=("colour",)), tmp_path / "teacher", steps=2, batch_size=2, seed=3)
    assert (out / "config.json").is_file() and not (tmp_path / "teacher.partial").exists()
    teacher = load_teacher("qwen2_5_vl", str(out), lora_r=0)
    assert teacher.hf_model is not None
