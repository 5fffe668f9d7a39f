"""The synthetic QA task: the answer-bearing frames are where the ground truth says, on
every frame and on the 128-frame grid; the files read with the project's readers; the
task is a pure function of its seed; recall is scored as counted by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import av
import av.video.reformatter
import numpy as np
import pytest

from hfs.manifests import get_benchmark, read_manifest
from hfs.pipeline.decode import decode_frames
from hfs.pipeline.demo.task import (
    COLOURS,
    QUERY_KINDS,
    TASK_FORMAT,
    Event,
    TaskConfig,
    VideoSpec,
    frame_shown,
    grid_hits,
    grid_timestamps,
    make_task,
    plan_item,
    plan_task,
    question_truth,
    uniform_catch_probability,
    video_fill,
    write_task_video,
)
from hfs.pipeline.demo.videos import SHAPE_KINDS, MovingBlobs, shape_mask
from hfs.pipeline.evaluation.recall import (
    EventRecall,
    EventTruth,
    QuestionTruth,
    event_recall,
    oracle_indices,
    read_ground_truth,
)
from hfs.pipeline.evaluation.selectors.basic import uniform_indices

# Short videos keep the suite fast; the 128-frame grid and event lengths are the real ones.
CONFIG = TaskConfig(duration_range_s=(20.0, 28.0))
N_TRAIN = N_TEST = 3  # one question of each kind per split
MANIFESTS = ("task.json", "train/train.json", "train/ground_truth.jsonl", "test/ground_truth.jsonl",
             "test/MC/test-00000-of-00001.parquet")
SATURATION = 60  # max(R,G,B) - min(R,G,B) above this is "coloured"; the distractors are grey


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_task(tmp_path_factory.mktemp("task"), n_train=N_TRAIN, n_test=N_TEST, seed=0, config=CONFIG)


@pytest.fixture(scope="module")
def truths(task) -> dict[str, QuestionTruth]:
    return {**read_ground_truth(task.train_truth), **read_ground_truth(task.test_truth)}


def _every_frame(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """All frames of a video as RGB, with their pts in seconds."""
    reformatter = av.video.reformatter.VideoReformatter()  # one for all frames: ~100x faster than to_ndarray's own
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    rgb = [reformatter.reformat(f, format="rgb24", threads=1).to_ndarray() for f in frames]
    return rgb, [float(f.time) for f in frames]


def _coloured(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels with a clear hue."""
    rgb = rgb.astype(np.int16)
    return rgb.max(axis=2) - rgb.min(axis=2) > SATURATION


# --- pure helpers, by hand --------------------------------------------------------


def test_grid_hits_by_hand():
    # 12.8 s on 128 frames: t_i = 0.05 + 0.1 i.
    assert grid_timestamps(12.8, 128)[:3] == pytest.approx([0.05, 0.15, 0.25])
    assert grid_hits((0.3, 0.6), 12.8, 128) == [3, 4, 5]
    assert grid_hits((0.35, 0.45), 12.8, 128) == [3]  # a t_i on the start counts, on the end does not
    assert grid_hits((0.36, 0.44), 12.8, 128) == []  # an event between two grid times: no grid frame shows it
    assert grid_hits((12.7, 12.8), 12.8, 128) == [127]


def test_frame_shown_is_the_last_frame_started():
    # 12 fps: frame j starts at j / 12 s; float noise at a start keeps the frame starting there.
    noisy_start = 7 * (1 / 12)
    assert noisy_start * 12 < 7
    times = [0.0, 0.05, 1 / 12, noisy_start, 7 / 12 - 1e-4, 5.0, -1.0]
    assert frame_shown(times, fps=12, n_frames=20).tolist() == [0, 0, 1, 7, 6, 19, 0]


def test_uniform_selection_and_its_catch_probability():
    assert uniform_indices(128, 16) == list(range(4, 128, 8))
    assert uniform_catch_probability([40], 128, 16) == 1 / 8
    assert uniform_catch_probability([40, 41, 42], 128, 16) == 3 / 8
    assert uniform_catch_probability(list(range(10, 20)), 128, 16) == 1.0
    assert uniform_catch_probability([], 128, 16) == 0.0


def _truth(sid: str, *events: tuple[int, ...]) -> QuestionTruth:
    return QuestionTruth(sid, "test", 0, f"{sid}.mp4", "order" if len(events) > 1 else "colour", "DO", "q?",
                         ("a", "b"), 0, 12.8, 10.0, 128, 128,
                         tuple(EventTruth("red", "circle", 0.0, 1.0, 0, 1, hits) for hits in events))


def test_event_recall_by_hand():
    truth = {"a": _truth("a", (10, 11)), "b": _truth("b", (50,), (90, 91)), "c": _truth("c", ()),
             "d": _truth("d", (5,))}
    selected = {"a": [11, 10, 0, 11], "b": [91, 3], "c": [1, 2]}  # d: not selected
    got = event_recall(selected, truth)
    # a: 2 hits (11 repeated counts once); b: 1 hit, second event only; c: nothing to hit.
    assert got == EventRecall(n=3, recall=2 / 3, all_events_recall=1 / 3, mean_hits=1.0, reachable=2 / 3,
                              missing=("d",))
    first = event_recall(selected, truth, k=1)  # only the first index of each selection
    assert (first.recall, first.mean_hits) == (2 / 3, 2 / 3)
    assert event_recall({}, truth).recall is None
    with pytest.raises(ValueError, match="no ground truth"):
        event_recall({"zz": [1]}, truth)
    with pytest.raises(ValueError, match="off the 128-frame grid"):
        event_recall({"a": [128]}, truth)


def test_shapes_and_distractors():
    masks = [shape_mask(kind, 72, 96, (36.0, 48.0), 16.0) for kind in SHAPE_KINDS]
    assert all(m.sum() > 300 for m in masks)
    assert all((a != b).sum() > 100 for i, a in enumerate(masks) for b in masks[i + 1:])  # all told apart
    blobs = MovingBlobs(72, 96, seed=3)
    first, later = blobs(0), blobs(5)
    assert (first != later).any()  # they move
    assert (first[..., 0] == first[..., 1]).all() and (first[..., 1] == first[..., 2]).all()  # and are grey
    assert (MovingBlobs(72, 96, seed=3)(5) == later).all()  # any frame renders alone, the same


# --- the plan ---------------------------------------------------------------------


def test_plan_questions_are_well_formed():
    items = plan_task(12, 6, seed=5, config=CONFIG)
    for item in items:
        spec = item.video
        assert CONFIG.fps_range[0] <= spec.fps <= CONFIG.fps_range[1]
        assert CONFIG.duration_range_s[0] - 1 / spec.fps <= spec.duration <= CONFIG.duration_range_s[1] + 1 / spec.fps
        assert len(item.options) == len(set(item.options)) == 5
        assert len(spec.events) == (2 if item.kind == "order" else 1)
        for event in spec.events:
            step_frames = spec.n_frames / CONFIG.grid_n
            assert 1 <= event.end_frame - event.start_frame <= round(CONFIG.event_grid_steps[1] * step_frames)
            margin = round(CONFIG.margin_s * spec.fps)
            assert margin <= event.start_frame < event.end_frame <= spec.n_frames - margin
        answer = item.options[item.answer_index]
        if item.kind == "order":
            first, second = spec.events
            assert second.start_frame - first.end_frame >= round(CONFIG.min_gap_s * spec.fps)
            assert first.colour != second.colour and first.shape != second.shape
            target, anchor = (second, first) if item.qtype == "TN" else (first, second)
            assert answer == target.colour and anchor.colour in item.options and anchor.shape in item.question
        else:
            assert answer == (spec.events[0].colour if item.kind == "colour" else spec.events[0].shape)
    assert {i.kind for i in items} == {"colour", "shape", "order"}
    assert len({i.answer_index for i in items}) > 2  # the answer moves among the letters


def test_plan_depends_only_on_seed_and_index():
    assert plan_task(4, 2, seed=0, config=CONFIG) == plan_task(4, 2, seed=0, config=CONFIG)
    # Each question has its own random stream: growing the task keeps the first questions.
    assert plan_task(4, 2, seed=0, config=CONFIG)[:2] == plan_task(2, 0, seed=0, config=CONFIG)
    assert plan_task(4, 2, seed=1, config=CONFIG) != plan_task(4, 2, seed=0, config=CONFIG)


# --- the videos show what the ground truth says -----------------------------------


def test_answer_shape_is_on_exactly_the_event_frames(task, truths):
    items = {i.sample_id: i for i in plan_task(N_TRAIN, N_TEST, seed=0, config=CONFIG)}
    assert set(items) == set(truths)
    for sid, truth in truths.items():
        spec = items[sid].video
        frames, pts = _every_frame(task.root / truth.video)
        assert len(frames) == truth.n_frames
        assert pts == pytest.approx(np.arange(truth.n_frames) / truth.fps, abs=1e-6)
        video = np.stack(frames).astype(np.int16)  # (frames, H, W, 3)
        outside = np.ones(len(video), bool)
        for event, gt in zip(spec.events, truth.events):
            assert (gt.start_frame, gt.end_frame) == (event.start_frame, event.end_frame)
            assert (gt.start_s, gt.end_s) == pytest.approx((event.start_frame / truth.fps, event.end_frame / truth.fps))
            outside[event.start_frame:event.end_frame] = False
            mask = shape_mask(event.shape, video.shape[1], video.shape[2], event.centre, event.radius)
            hue = np.abs(video[event.start_frame:event.end_frame] - COLOURS[event.colour]).max(axis=3) <= 60
            iou = (hue & mask).sum(axis=(1, 2)) / (hue | mask).sum(axis=(1, 2))
            assert iou.min() > 0.75, f"{sid}: the {event.colour} {event.shape} is not as planned (IoU {iou.min():.2f})"
        coloured = (video.max(axis=3) - video.min(axis=3) > SATURATION).sum(axis=(1, 2))
        stray = np.flatnonzero(outside & (coloured >= 30))
        assert not len(stray), f"{sid}: colour outside every event, frames {stray}"


def test_grid_hits_agree_with_the_decoder(task, truths):
    for sid, truth in truths.items():
        result = decode_frames(task.root / truth.video, n=truth.grid_n)
        assert result.info.duration == pytest.approx(truth.duration_s)
        assert result.timestamps == pytest.approx(grid_timestamps(truth.duration_s, truth.grid_n))
        shown = [i for i, rgb in enumerate(result.frames) if _coloured(rgb).sum() > 200]
        assert shown == list(truth.grid_hits), sid
        for event in truth.events:
            frames = frame_shown(result.timestamps[list(event.grid_hits)], truth.fps, truth.n_frames)
            assert all(event.start_frame <= f < event.end_frame for f in frames)
    assert all(t.grid_hits for t in truths.values())  # at these seeds every event is on the grid


def test_grid_time_on_an_event_boundary(tmp_path):
    # 256 frames at 8 fps on 128 grid frames: t_i = (i + 0.5) * 0.25 s starts frame 2i + 1 exactly,
    # so an event over frames [5, 7) begins at t_2 and ends at t_3: grid frame 2 shows it, 3 does not.
    event = Event("red", "square", 5, 7, (36.0, 48.0), 16.0)
    spec = VideoSpec(fps=8, n_frames=256, size=(96, 72), background_seed=1, n_blobs=3, noise=4, events=(event,))
    assert grid_hits(event.span(spec.fps), spec.duration, 128) == [2]
    write_task_video(spec, tmp_path / "edge.mp4")
    result = decode_frames(tmp_path / "edge.mp4", n=128)
    assert [i for i, rgb in enumerate(result.frames) if _coloured(rgb).sum() > 200] == [2]


def test_video_fill_matches_the_plan():
    item = plan_task(1, 0, seed=2, config=CONFIG)[0]
    event = item.video.events[0]
    fill = video_fill(item.video)
    width, height = item.video.size
    inside, before = fill(event.start_frame, height, width), fill(event.start_frame - 1, height, width)
    assert _coloured(inside).sum() > 300 and _coloured(before).sum() == 0


# --- files: readers, determinism, reuse -------------------------------------------


def test_training_manifest_reads_with_every_answer(task, truths):
    manifest = read_manifest(task.train_manifest, strict=True)
    assert manifest.bad == [] and len(manifest.samples) == N_TRAIN
    for sample in manifest.samples:
        truth = truths[sample.sample_id]
        assert (sample.question, sample.options, sample.answer_index) == (truth.question, truth.options,
                                                                         truth.answer_index)
        assert sample.meta["prompt_suffix"].startswith("Answer with the option's letter")
    assert all(Path(v.path).is_file() for v in manifest.videos)
    record = json.loads(task.train_manifest.read_text())[0]
    assert record["conversations"][0]["value"].startswith("<video>\n") and record["data_source"] == "hfs_synthetic"


def test_test_set_reads_with_the_nextqa_reader(task, truths):
    data = get_benchmark("nextqa").read(task.test_dir)
    assert (data.view, data.bad, data.missing) == ("parquet", [], [])
    assert len(data.samples) == len(data.videos) == N_TEST
    for sample in data.samples:
        truth = truths[sample.sample_id]
        assert (sample.options, sample.answer_index) == (truth.options, truth.answer_index)
        assert sample.meta["qid"] == truth.qid == 0
        assert sample.meta["type"] == truth.type and sample.meta["group"] in ("descriptive", "temporal")
    assert {Path(v.path).resolve() for v in data.videos} == {(task.root / t.video).resolve()
                                                             for t in truths.values() if t.split == "test"}


def test_same_seed_same_files_and_frames(task, tmp_path):
    again = make_task(tmp_path / "again", n_train=N_TRAIN, n_test=N_TEST, seed=0, config=CONFIG)
    for name in MANIFESTS:
        assert (again.root / name).read_bytes() == (task.root / name).read_bytes(), name
    for truth in read_ground_truth(task.test_truth).values():
        first, _ = _every_frame(task.root / truth.video)
        second, _ = _every_frame(again.root / truth.video)
        assert len(first) == len(second) and all((a == b).all() for a, b in zip(first, second))
        assert (task.root / truth.video).read_bytes() == (again.root / truth.video).read_bytes()
    other = make_task(tmp_path / "other", n_train=1, n_test=0, seed=1, config=CONFIG)
    assert other.train_truth.read_text().splitlines()[0] != task.train_truth.read_text().splitlines()[0]


def test_rerun_reuses_videos_and_refuses_another_config(task):
    videos = sorted(task.root.glob("*/*/*.mp4"))
    assert len(videos) == N_TRAIN + N_TEST
    stamps = [v.stat().st_mtime_ns for v in videos]
    before = {name: (task.root / name).read_bytes() for name in MANIFESTS}
    make_task(task.root, n_train=N_TRAIN, n_test=N_TEST, seed=0, config=CONFIG)
    assert [v.stat().st_mtime_ns for v in videos] == stamps
    assert {name: (task.root / name).read_bytes() for name in MANIFESTS} == before
    with pytest.raises(ValueError, match=r"config\.noise: 4 -> 9"):
        make_task(task.root, n_train=N_TRAIN, n_test=N_TEST, seed=0, config=dataclasses.replace(CONFIG, noise=9))
    with pytest.raises(ValueError, match="seed: 0 -> 3"):
        make_task(task.root, n_train=N_TRAIN, n_test=N_TEST, seed=3, config=CONFIG)


def test_each_writer_has_a_temporary_name_of_its_own(tmp_path):
    """Two benchmarks side by side may prepare the same task folder: each writes its files under a
    temporary name of its own (one shared ".name.partial" let the slower run's rename fail with
    FileNotFoundError), beside the file, the video's suffix kept for its container."""
    import threading

    from hfs.pipeline.demo.task import _partial

    path = tmp_path / "train" / "train.json"
    names, both = [], threading.Barrier(2)  # both alive at once, as two concurrent writers are

    def name():
        names.append(_partial(path))
        both.wait()

    threads = [threading.Thread(target=name) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 2 and all(n.parent == path.parent and n.name.startswith(".train.json.") for n in names)
    video = _partial(tmp_path / "train_0001.mp4", keep_suffix=True)
    assert video.suffix == ".mp4" and video != _partial(tmp_path / "train_0001.mp4")
    assert _partial(path) == _partial(path)  # one writer, one name: a rerun in the same thread overwrites it


def test_summary_counts_grid_hits(task, truths):
    summary = json.loads(task.task_json.read_text())["summary"]
    assert summary == task.summary
    test = [t for t in truths.values() if t.split == "test"]
    assert summary["test"]["mean_grid_hits_per_question"] == pytest.approx(np.mean([len(t.grid_hits) for t in test]),
                                                                           abs=1e-4)
    assert 0.0 <= summary["test"]["uniform_catch_probability_per_event"] <= 0.5


def test_a_format_1_task_is_upgraded_and_an_unknown_format_refused(task):
    """A task.json written before n_events existed (format 1) names the same questions: reused, rewritten."""
    record = json.loads(task.task_json.read_text())
    assert record["format"] == TASK_FORMAT == 2
    old = {**record, "format": 1, "config": {k: v for k, v in record["config"].items() if k != "n_events"}}
    task.task_json.write_text(json.dumps(old))
    videos = sorted(task.root.glob("*/*/*.mp4"))
    stamps = [v.stat().st_mtime_ns for v in videos]
    make_task(task.root, n_train=N_TRAIN, n_test=N_TEST, seed=0, config=CONFIG)
    assert [v.stat().st_mtime_ns for v in videos] == stamps  # nothing re-rendered
    assert json.loads(task.task_json.read_text()) == record
    task.task_json.write_text(json.dumps({**record, "format": 99}))
    with pytest.raises(ValueError, match="task format 99, this hfs reads 1 to 2"):
        make_task(task.root, n_train=N_TRAIN, n_test=N_TEST, seed=0, config=CONFIG)
    task.task_json.write_text(json.dumps(record))


# --- the query-aware kinds ----------------------------------------------------------

QUERY_CONFIG = dataclasses.replace(CONFIG, kinds=("query_shape", "query_colour", "query_order"))
PAIR_CONFIG = dataclasses.replace(CONFIG, kinds=("query_pair",), n_events=5, min_gap_s=1.0)


def test_query_items_by_hand():
    """Seed 0, test questions 0-2 (one of each query kind), checked against their printed plans."""
    shape_q, colour_q, order_q = (plan_item("test", i, 0, QUERY_CONFIG) for i in range(3))

    # three events: green circle, yellow square, red diamond; the question names the red one
    assert [(e.colour, e.shape) for e in shape_q.video.events] == [("green", "circle"), ("yellow", "square"),
                                                                    ("red", "diamond")]
    assert shape_q.question == "What shape was the red object?"
    assert shape_q.options[shape_q.answer_index] == "diamond" and shape_q.answer_events == (2,)
    assert {"circle", "square"} <= set(shape_q.options)  # the distractors' shapes are offered
    truth = question_truth(shape_q)
    assert [(e.colour, e.shape) for e in truth.events] == [("red", "diamond")]
    assert [(e.colour, e.shape) for e in truth.distractors] == [("green", "circle"), ("yellow", "square")]
    # the red diamond shows over frames 265-270 at 12 fps: only its grid frames are answer-bearing
    assert truth.grid_hits == tuple(grid_hits((265 / 12, 271 / 12), shape_q.video.duration))
    assert not set(truth.grid_hits) & {i for e in truth.distractors for i in e.grid_hits}

    assert colour_q.question == "What colour was the triangle?"
    assert [(e.colour, e.shape) for e in colour_q.video.events] == [("red", "diamond"), ("blue", "triangle"),
                                                                     ("green", "cross")]
    assert colour_q.options[colour_q.answer_index] == "blue" and colour_q.answer_events == (1,)
    assert {"red", "green"} <= set(colour_q.options)

    # blue triangle, yellow circle, green square; right after the circle comes the green square
    assert order_q.question == "What colour is the shape that appears right after the circle?"
    assert order_q.qtype == "TN" and order_q.options[order_q.answer_index] == "green"
    assert order_q.answer_events == (1, 2)  # the anchor and the answer, not the blue triangle
    assert {"yellow", "blue"} <= set(order_q.options)
    assert [(e.colour, e.shape) for e in question_truth(order_q).distractors] == [("blue", "triangle")]


def test_query_plans_are_well_formed_and_seeded():
    items = plan_task(18, 12, seed=3, config=QUERY_CONFIG)
    assert plan_task(18, 12, seed=3, config=QUERY_CONFIG) == items
    assert plan_task(18, 12, seed=4, config=QUERY_CONFIG) != items
    for item in items:
        events = item.video.events
        assert len(events) == QUERY_CONFIG.n_events
        assert len({e.colour for e in events}) == len({e.shape for e in events}) == len(events)
        assert all(b.start_frame - a.end_frame >= round(CONFIG.min_gap_s * item.video.fps)
                   for a, b in zip(events, events[1:]))
        answer = item.options[item.answer_index]
        named = [events[i] for i in item.answer_events]
        truth = question_truth(item)
        assert len(truth.events) + len(truth.distractors) == len(events)
        assert [(e.colour, e.shape) for e in truth.events] == [(e.colour, e.shape) for e in named]
        if item.kind == "query_shape":
            assert named[0].colour in item.question and answer == named[0].shape
            assert {e.shape for e in events} <= set(item.options)
        elif item.kind == "query_colour":
            assert named[0].shape in item.question and answer == named[0].colour
            assert {e.colour for e in events} <= set(item.options)
        else:
            first, second = named
            assert item.answer_events[1] == item.answer_events[0] + 1  # adjacent in time
            target, anchor = (second, first) if item.qtype == "TN" else (first, second)
            assert anchor.shape in item.question and answer == target.colour
            assert {e.colour for e in events} <= set(item.options)
    assert len({i.answer_index for i in items}) > 2
    assert {i.answer_events for i in items if i.kind != "query_order"} >= {(0,), (1,), (2,)}  # any event is named


def test_query_pair_plans_name_one_pair_by_colour():
    """Every event of a `query_pair` video is a pair of shapes sharing its frames; the named colour and
    its partner (the answer) are in no other pair, so only the named pair's frames answer."""
    assert "query_pair" in QUERY_KINDS
    items = plan_task(24, 12, seed=5, config=PAIR_CONFIG)
    assert plan_task(24, 12, seed=5, config=PAIR_CONFIG) == items
    for item in items:
        events = item.video.events
        pairs = [events[i:i + 2] for i in range(0, len(events), 2)]
        assert len(pairs) == PAIR_CONFIG.n_events
        for a, b in pairs:
            assert (a.start_frame, a.end_frame) == (b.start_frame, b.end_frame) and a.colour != b.colour
            # side by side: the two boxes do not overlap
            assert max(abs(a.centre[0] - b.centre[0]), abs(a.centre[1] - b.centre[1])) >= 2 * a.radius + 2
        j, = {i // 2 for i in item.answer_events}
        assert item.answer_events == (2 * j, 2 * j + 1)
        named = item.question.split(" the ")[1].split()[0]
        answer = item.options[item.answer_index]
        assert {e.colour for e in pairs[j]} == {named, answer} and named != answer
        assert not {named, answer} & {e.colour for p in pairs[:j] + pairs[j + 1:] for e in p}
        assert named in item.options and len(set(item.options)) == len(item.options) == 5
        truth = question_truth(item)
        assert [(e.colour, e.shape) for e in truth.events] == [(e.colour, e.shape) for e in pairs[j]]
        assert len(truth.distractors) == 2 * (PAIR_CONFIG.n_events - 1)
    assert {i.answer_events for i in items} >= {(0, 1), (4, 5), (8, 9)}  # any pair may be named
    assert len({i.answer_index for i in items}) > 2
    width, height = items[0].video.size
    a, b = items[0].video.events[:2]
    frame = video_fill(items[0].video)(a.start_frame, height, width).astype(int)
    for event in (a, b):  # both shapes of the pair are drawn in its frames
        assert (np.abs(frame - COLOURS[event.colour]).sum(-1) == 0).sum() > 100


def test_distractors_are_drawn_in_the_video():
    item = plan_item("test", 0, 0, QUERY_CONFIG)
    width, height = item.video.size
    fill = video_fill(item.video)
    for event in item.video.events:
        frame = fill(event.start_frame, height, width).astype(int)
        assert (np.abs(frame - COLOURS[event.colour]).sum(-1) == 0).sum() > 100, event
        before = fill(event.start_frame - 1, height, width).astype(int)
        assert (np.abs(before - COLOURS[event.colour]).sum(-1) == 0).sum() == 0


def test_query_kinds_check_their_event_count():
    with pytest.raises(ValueError, match="query_order needs a distractor"):
        TaskConfig(kinds=("query_order",), n_events=2)
    with pytest.raises(ValueError, match="n_events must be in 2..5"):
        TaskConfig(kinds=("query_shape",), n_events=6)
    two = plan_item("train", 0, 0, TaskConfig(kinds=("query_shape",), n_events=2, n_options=2))
    assert len(two.video.events) == 2 and set(two.options) == {e.shape for e in two.video.events}


def test_oracle_indices_by_hand():
    one = _truth("a", (10, 11))
    assert oracle_indices(one, 4) == [10, 11, 16, 48]  # the hits, then centres 16, 48 (of 16, 48, 80, 112)
    two = _truth("b", (50, 51, 52), (90,))
    assert oracle_indices(two, 2) == [50, 90]  # one of each event before a second of either
    assert oracle_indices(_truth("c", ()), 4) == uniform_indices(128, 4)
    hit_on_centre = _truth("d", (16,))
    assert oracle_indices(hit_on_centre, 4) == [16, 48, 80, 112]  # a hit on a centre: the next centres fill
    assert event_recall({"b": oracle_indices(two, 2)}, {"b": two}).all_events_recall == 1.0
