"""lmms-eval's Video-MME subtitle rule (``--protocol lmms-eval``): the lines at its 32 evenly spaced
frames, read as lmms_eval/tasks/videomme/utils.py reads them, whatever frames the selector chose."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hfs.manifests import QASample
from hfs.manifests.benchmarks.subtitles import (
    SubtitleError,
    lmms_eval_srt_cues,
    lmms_eval_subtitle_lines,
    sample_lmms_eval_subtitle_lines,
)

FONT = '<font color="white" size=".72c">{}</font>'

SRT = "\n".join([
    "1", "00:00:00,500 --> 00:00:01,500", FONT.format("hello"), "",
    "2", "00:00:01,600 --> 00:00:01,900", FONT.format("short"), "",
    "3", "00:00:05,000 --> 00:00:07,000", FONT.format("two"), FONT.format("lines"), "",
    "4", "00:00:10,000 --> 00:00:11,000", "plain text, no font tag", "",
    "5", "00:00:12,000 --> 00:00:13,000", "",  # index and time only: fewer than 3 lines, skipped
    "6", "00:00:00,500 --> 00:00:01,500", FONT.format("hello again"), "",  # same times as cue 1: replaces it
    "7", "00:00:30,000 --> 00:00:31,000", FONT.format("end"), "",
])

# fps 10, 311 frames: np.linspace(0, 310, 32, dtype=int) = 0, 10, ..., 310, i.e. one frame a second.
# Cues as frame spans [int(start·10), int(end·10)): hello again [5, 15) holds frame 10; short [16, 19) none;
# two [50, 70) holds 50 and 60 (one line); the plain cue [100, 110) holds 100 but has no font text;
# end [300, 310) holds 300 (310 is past its end).
EXPECTED = ["hello again", "two", "end"]


def test_cues_are_read_as_lmms_eval_reads_them():
    cues = lmms_eval_srt_cues(SRT)
    assert list(cues) == [(0.5, 1.5), (1.6, 1.9), (5.0, 7.0), (10.0, 11.0), (30.0, 31.0)]
    assert cues[(0.5, 1.5)] == FONT.format("hello again")
    assert cues[(5.0, 7.0)] == FONT.format("two") + " " + FONT.format("lines")


def test_lines_at_lmms_evals_evenly_spaced_frames():
    assert lmms_eval_subtitle_lines(lmms_eval_srt_cues(SRT), fps=10.0, total_frames=311) == EXPECTED
    # 2 frames (0 and 310): only a cue covering either counts
    assert lmms_eval_subtitle_lines(lmms_eval_srt_cues(SRT), fps=10.0, total_frames=311, frame_num=2) == []


def test_sample_lines_and_a_video_without_subtitles(tmp_path):
    srt = tmp_path / "v.srt"
    srt.write_text(SRT, encoding="utf-8")
    with_file = QASample("q1", "v", "?", ("a", "b"), "a", 0, "", {"subtitle_path": str(srt)})
    without = QASample("q2", "w", "?", ("a", "b"), "a", 0, "", {"subtitle_path": None})
    assert sample_lmms_eval_subtitle_lines(with_file, 10.0, 311) == EXPECTED
    assert sample_lmms_eval_subtitle_lines(without, 10.0, 311) is None  # the prompt says "No subtitles available"


def test_evaluate_takes_the_lines_whatever_the_selected_frames(tmp_path, monkeypatch):
    import hfs.pipeline.decode as decode
    from hfs.stages.evaluate import lmms_eval_subtitle_lines as stage_lines

    srt = tmp_path / "v.srt"
    srt.write_text(SRT, encoding="utf-8")
    probed = []
    monkeypatch.setattr(decode, "probe", lambda path: probed.append(path) or SimpleNamespace(
        fps=10.0, n_frames=311, duration=31.1))
    data = SimpleNamespace(videos=[SimpleNamespace(video_id="v", path="/videos/v.mp4")])
    sample = QASample("q1", "v", "?", ("a", "b"), "a", 0, "", {"subtitle_path": str(srt)})
    lines = stage_lines(data, "videomme")
    assert lines(sample, [1.7]) == EXPECTED  # the hfs rule would give "short" at 1.7 s
    assert lines(sample, [0.0, 30.5]) == EXPECTED
    assert probed == ["/videos/v.mp4"]  # probed once per video
    no_file = QASample("q2", "v", "?", ("a", "b"), "a", 0, "", {"subtitle_path": None})
    assert lines(no_file, [1.0]) == []


def test_a_time_line_lmms_eval_cannot_read_fails_clearly():
    bad_line = r"x\.srt: lmms-eval cannot read the time line '00:00:01\.5 --> 00:00:02,000'"
    with pytest.raises(SubtitleError, match=bad_line):
        lmms_eval_srt_cues("1\n00:00:01.5 --> 00:00:02,000\ntext\n", "x.srt")
