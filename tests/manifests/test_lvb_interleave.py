"""LongVideoBench's interleaved subtitle rule (lmms-eval ``longvideobench_val_i``, from the
benchmark's own ``insert_subtitles_into_frames``): frames placed up to each cue's midpoint, a cue
kept when a frame lies strictly inside it, cues shorter than 1 s widened to the 1 s around their
midpoint. Expected orders worked out by hand from that code."""

from __future__ import annotations

import json

import pytest

from hfs.manifests import QASample
from hfs.manifests.benchmarks.subtitles import (
    SubtitleError,
    lmms_eval_lvb_frame_times,
    lmms_eval_lvb_prompt_prefix,
    lvb_interleave,
    sample_lmms_eval_lvb_items,
    sample_lmms_eval_lvb_prefix,
)

FRAMES = [0.0, 2.0, 4.0, 6.0]  # lmms_eval_lvb_frame_times(8.0, 4)
CUES = [  # on the source video's timeline; the clip starts at 10 s
    {"timestamp": [10.5, 11.5], "text": "a"},  # 0.5–1.5, midpoint 1.0: frame 0 before it; no frame inside: left out
    {"timestamp": [11.8, 12.1], "text": "b"},  # 1.8–2.1, shorter than 1 s: 1.45–2.45 holds frame 2 (1): kept
    {"start": "00:00:13.000", "end": "00:00:15.500", "line": "c"},  # 3–5.5, midpoint 4.25: frames 1, 2 first
    {"timestamp": [15.9, 16.1], "text": "e"},  # midpoint 6.0: frame 3 (6 <= 6) first; widened 5.5–6.5 holds it
]


def test_frame_times_are_compute_frame_timestamps():
    assert lmms_eval_lvb_frame_times(8.0, 4) == FRAMES
    assert lmms_eval_lvb_frame_times(32.0) == [2.0 * i for i in range(16)]  # 16 frames, duration / 16 apart
    assert lmms_eval_lvb_frame_times(10.5) == [float(i) for i in range(10)]  # short clip: one a second
    assert lmms_eval_lvb_frame_times(16.0) == [float(i) for i in range(16)]  # not longer than 16 s: one a second


def test_interleave_order_by_hand():
    items = lvb_interleave(FRAMES, CUES, offset_s=10.0, duration_s=8.0)
    assert items == [0, "b", 1, 2, "c", 3, "e"]
    # longvideobench_doc_to_text joins with "\n", a frame as "<image>"; lmms-eval's Qwen2.5-VL chat wrapper
    # sends that text as it is (the images all go before it)
    assert lmms_eval_lvb_prompt_prefix(items) == "<image>\nb\n<image>\n<image>\nc\n<image>\ne"


def test_frames_after_the_last_cue_close_the_list_and_no_cues_gives_frames_only():
    assert lvb_interleave(FRAMES, CUES[:2], offset_s=10.0, duration_s=8.0) == [0, "b", 1, 2, 3]
    assert lvb_interleave(FRAMES, [], offset_s=0.0, duration_s=8.0) == [0, 1, 2, 3]


def test_a_timestamp_end_that_is_not_a_float_is_the_duration_as_the_loader_reads_it():
    # the loaders test isinstance(end, float): an integer end, like null, becomes the duration (8 s)
    assert lvb_interleave(FRAMES, [{"timestamp": [3, 4], "text": "x"}], 0.0, 8.0) == [0, 1, 2, "x", 3]
    assert lvb_interleave(FRAMES, [{"timestamp": [3, None], "text": "x"}], 0.0, 8.0) == [0, 1, 2, "x", 3]
    # the same cue with float times: 3–4 s, midpoint 3.5, 1 s long so not widened, no frame inside
    assert lvb_interleave(FRAMES, [{"timestamp": [3.0, 4.0], "text": "x"}], 0.0, 8.0) == [0, 1, 2, 3]


def test_a_frame_on_a_cue_edge_is_not_inside_it():
    # strictly inside: frame 2 s at the start of 2–3.5 does not keep it
    assert lvb_interleave(FRAMES, [{"timestamp": [2.0, 3.5], "text": "x"}], 0.0, 8.0) == [0, 1, 2, 3]


@pytest.mark.parametrize(("cues", "message"), [
    ({"timestamp": [0.0, 1.0]}, "expected a list of cues"),
    ([{"timestamp": [0.0, 1.0], "text": "ok"}, {"text": "no time"}], "cue 1 has neither 'timestamp' nor 'start'"),
    ([{"timestamp": [0.0], "text": "x"}], "cue 0: 'timestamp' must be"),
    ([{"start": "00:00:01.000", "end": "00:00:02.000", "line": None}], "cue 0: the text must be a string"),
])
def test_bad_cues_are_named(cues, message):
    with pytest.raises(ValueError, match=message):
        lvb_interleave(FRAMES, cues, 0.0, 8.0)


def test_sample_prefix_reads_the_questions_file_at_the_tasks_frame_times(tmp_path):
    path = tmp_path / "v_en.json"
    path.write_text(json.dumps(CUES), encoding="utf-8")
    meta = {"subtitle_path": str(path), "duration_s": 8.0, "subtitle_offset_s": 10.0}
    sample = QASample("q1", "v", "?", ("a", "b"), "a", 0, "", meta)
    # 8 s is not longer than 16 s: frames at 0..7 s, one a second; worked out by hand:
    # "a" (0.5–1.5, midpoint 1.0): frames 0, 1 first; frame 1 s lies inside: kept (with 4 frames it was not);
    # "b" (midpoint 1.95, widened 1.45–2.45): no frame first, frame 2 inside: kept;
    # "c" (3–5.5, midpoint 4.25): frames 2, 3, 4 first, kept; "e" (midpoint 6.0): frames 5, 6 first, kept; frame 7
    assert lvb_interleave(lmms_eval_lvb_frame_times(8.0), CUES, 10.0, 8.0) == [
        0, 1, "a", "b", 2, 3, 4, "c", 5, 6, "e", 7]
    assert sample_lmms_eval_lvb_items(sample) == (0, 1, "a", "b", 2, 3, 4, "c", 5, 6, "e", 7)
    assert sample_lmms_eval_lvb_prefix(sample) == (
        "<image>\n<image>\na\nb\n<image>\n<image>\n<image>\nc\n<image>\n<image>\ne\n<image>")


@pytest.mark.parametrize(("meta", "message"), [
    ({"subtitle_path": None, "duration_s": 8.0}, "question 'q1': no subtitle file"),
    ({"subtitle_path": "x.json", "duration_s": None}, "question 'q1': no duration"),
    ({"subtitle_path": "/nonexistent/x.json", "duration_s": 8.0}, "/nonexistent/x.json: cannot read"),
])
def test_sample_prefix_refuses_what_lmms_eval_could_not_read(meta, message):
    with pytest.raises(SubtitleError, match=message):
        sample_lmms_eval_lvb_prefix(QASample("q1", "v", "?", ("a", "b"), "a", 0, "", meta))


def test_sample_prefix_names_a_file_that_is_not_cue_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"not": "a list"}), encoding="utf-8")
    sample = QASample("q1", "v", "?", ("a", "b"), "a", 0, "", {"subtitle_path": str(path), "duration_s": 8.0})
    with pytest.raises(SubtitleError, match="bad.json: not LongVideoBench subtitle JSON: expected a list"):
        sample_lmms_eval_lvb_prefix(sample)
