"""Tests of hfs.manifests.benchmarks: each reader on fixture files in the exact published layout, and subtitles.

Fixtures are written by the tests (parquet with pyarrow, JSON, CSV, SRT; the writers live in
tests/benchmark_layouts.py); video files are empty placeholders because the readers only check existence.
"""

from __future__ import annotations

import json
import math
import shutil

import pyarrow as pa
import pytest

from hfs.manifests import BenchmarkError, get_benchmark, list_benchmarks, make_video_id, register_benchmark
from hfs.manifests.benchmarks import (
    Cue,
    SubtitleError,
    cues_near,
    lines_near,
    parse_lvb_cues,
    parse_srt,
    read_subtitle_file,
)
from hfs.manifests.benchmarks import _BENCHMARKS  # noqa: PLC2701  (registry, restored after the test)

from benchmark_layouts import (  # the published layouts' writers, shared with the hfs evaluate/select tests
    LVB_SCHEMA,
    MLVU_SCHEMA,
    NEXTQA_SCHEMA,
    SRT,
    VIDEOMME_SCHEMA,
    lvb_parquet_row,
    lvb_record,
    mlvu_parquet_row,
    mlvu_record,
    nextqa_row,
    touch,
    LAYOUTS,
    videomme_row,
    write_layout,
    write_parquet,
    write_text,
)


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_four_benchmarks_and_rejects_unknown_names():
    assert list_benchmarks()[:4] == ["nextqa", "videomme", "longvideobench", "mlvu"]
    with pytest.raises(KeyError, match="unknown benchmark 'nope'.*nextqa"):
        get_benchmark("nope")


def test_register_benchmark_adds_one_and_refuses_a_duplicate(monkeypatch):
    monkeypatch.setattr("hfs.manifests.benchmarks._BENCHMARKS", dict(_BENCHMARKS))

    @register_benchmark("toy")
    class Toy:
        def read(self, data_dir, **kw): ...
        def aggregate(self, outcomes, skips): ...
        def table_metrics(self, aggregate): ...

    assert "toy" in list_benchmarks() and get_benchmark("toy").name == "toy"
    with pytest.raises(ValueError, match="already registered"):
        register_benchmark("toy")(Toy)
    with pytest.raises(TypeError, match="no aggregate"):
        register_benchmark("broken")(type("Broken", (), {"read": lambda self: 0, "table_metrics": lambda self: 0}))


# --------------------------------------------------------------------------- NExT-QA


def test_nextqa_parquet_view(tmp_path):
    write_parquet(tmp_path, "MC/test-00000-of-00001.parquet", [
        nextqa_row(4010069381, 6, "CH", 0),
        nextqa_row(4010069381, 7, "TP", 3),
        nextqa_row(2574374895, 8, "TN", 7),  # malformed: answer index out of range
        nextqa_row(1111111111, 1, "DL", 1),  # its video is missing
    ], NEXTQA_SCHEMA)
    touch(tmp_path, "NExTVideo/4010069381.mp4")
    touch(tmp_path, "NExTVideo/2574374895.mp4")

    data = get_benchmark("nextqa").read(tmp_path)

    assert data.view == "parquet"
    (video,) = data.videos  # two questions, one video
    assert video.key == "NExTVideo/4010069381.mp4"
    assert video.video_id == make_video_id("NExTVideo/4010069381.mp4")
    assert video.path == str(tmp_path / "NExTVideo/4010069381.mp4")
    ch, tp = data.samples
    assert (ch.sample_id, tp.sample_id) == ("4010069381_6", "4010069381_7")
    assert ch.video_id == tp.video_id == video.video_id
    assert ch.options == ("roll the handle", "tap their feet", "strum", "hit with sticks", "pat")
    assert (ch.answer_index, ch.answer, tp.answer_index) == (0, "roll the handle", 3)
    assert ch.meta["type"] == "CH" and ch.meta["group"] == "causal"
    assert tp.meta["group"] == "temporal" and tp.meta["qid"] == 7
    (bad,) = data.bad
    assert (bad.file, bad.line) == (str(tmp_path / "MC/test-00000-of-00001.parquet"), 3)
    assert "out of range" in bad.reason
    (missing,) = data.missing
    assert missing.sample.sample_id == "1111111111_1" and missing.reason == "missing video"
    assert missing.path == str(tmp_path / "NExTVideo/1111111111.mp4")
    assert missing.sample.meta["group"] == "descriptive"
    assert data.skip_counts() == {"bad row": 1, "missing video": 1}


def test_nextqa_csv_view_with_the_original_nested_video_folders(tmp_path):
    header = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
    write_text(tmp_path, "test.csv", header
               + "2574374895,719,320,240,what did the baby do after throwing the cup,2,8,TN,clap,sit,lay,pick,crawl\n"
               + "2925959064,1233,500,375,where is this place,1,1,XX,mall,river,pool,room,hill\n")
    write_text(tmp_path, "map_vid_vidorID.json", json.dumps({"2574374895": "0020/2574374895"}))
    touch(tmp_path, "NExTVideo/0020/2574374895.mp4")

    data = get_benchmark("nextqa").read(tmp_path)

    assert data.view == "csv"
    (sample,) = data.samples
    assert sample.sample_id == "2574374895_8" and sample.answer == "lay"
    assert data.videos[0].key == "NExTVideo/0020/2574374895.mp4"
    (bad,) = data.bad
    assert bad.line == 3 and "unknown question type 'XX'" in bad.reason


NEXTQA_CSV_HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"


def test_nextqa_val_split_in_its_published_layout(tmp_path):
    # doc-doc/NExT-QA dataset/nextqa/val.csv: the columns of test.csv (its first two rows, shortened)
    write_text(tmp_path, "val.csv", NEXTQA_CSV_HEADER
               + "4010069381,369,640,480,how do the two man play the instrument,0,6,CH,roll the handle,tap their feet,"
                 "strum the string,hit with sticks,pat with hand\n"
               + "4882821564,2697,640,480,why did the boy pick up one present,2,1,TP,share,approach,unwrap,play,wave\n")
    touch(tmp_path, "NExTVideo/4010069381.mp4")
    touch(tmp_path, "NExTVideo/4882821564.mp4")

    data = get_benchmark("nextqa").read(tmp_path)

    assert data.view == "csv-val" and not data.bad and not data.missing
    assert [s.sample_id for s in data.samples] == ["4010069381_6", "4882821564_1"]
    assert [s.answer for s in data.samples] == ["roll the handle", "unwrap"]
    assert {s.meta["split"] for s in data.samples} == {"val"}
    assert data.samples[1].meta["group"] == "temporal"

    # the original dataset/nextqa/ folder holds both: test first, view "csv-val" for val
    write_text(tmp_path, "test.csv", NEXTQA_CSV_HEADER + "4010069381,369,640,480,where,1,1,DL,a,b,c,d,e\n")
    test = get_benchmark("nextqa").read(tmp_path)
    assert test.view == "csv" and [s.meta["split"] for s in test.samples] == ["test"]
    assert get_benchmark("nextqa").read(tmp_path, view="csv-val").view == "csv-val"


def test_video_ids_do_not_change_when_the_data_folder_moves(tmp_path):
    src = tmp_path / "a"
    write_parquet(src, "MC/test-00000-of-00001.parquet", [nextqa_row(5, 1, "CW", 0)], NEXTQA_SCHEMA)
    touch(src, "NExTVideo/5.mp4")
    first = get_benchmark("nextqa").read(src)
    shutil.copytree(src, tmp_path / "elsewhere")
    second = get_benchmark("nextqa").read(tmp_path / "elsewhere")
    assert first.videos[0].video_id == second.videos[0].video_id
    assert first.videos[0].path != second.videos[0].path


def test_no_view_found_names_the_files_looked_for(tmp_path):
    with pytest.raises(BenchmarkError, match=r"MC/test-\*\.parquet.*test\.csv"):
        get_benchmark("nextqa").read(tmp_path)
    with pytest.raises(BenchmarkError, match=r"lvb_val\.json.*validation-\*\.parquet"):
        get_benchmark("longvideobench").read(tmp_path)
    with pytest.raises(BenchmarkError, match="not a folder"):
        get_benchmark("mlvu").read(tmp_path / "absent")


def test_a_file_missing_a_published_column_is_one_clear_error(tmp_path):
    schema = pa.schema([f for f in NEXTQA_SCHEMA if f.name != "qid"])
    write_parquet(tmp_path, "MC/test-00000-of-00001.parquet",
                  [{k: v for k, v in nextqa_row(5, 1, "CW", 0).items() if k != "qid"}], schema)
    with pytest.raises(BenchmarkError, match="missing column\\(s\\) qid"):
        get_benchmark("nextqa").read(tmp_path)


# --------------------------------------------------------------------------- Video-MME


def test_videomme_parquet_videos_extensions_and_subtitles(tmp_path):
    write_parquet(tmp_path, "videomme/test-00000-of-00001.parquet", [
        videomme_row("001", "short", "fFjv93ACGo8", 1, "B"),
        videomme_row("001", "short", "fFjv93ACGo8", 2, "D"),
        videomme_row("601", "long", "-dfvdKf-KR0", 1, "C"),
        videomme_row("301", "medium", "absentVideo", 1),  # its video is missing
        videomme_row("302", "medium", "otherVideo1", 1, options=["Seven.", "Eight.", "Nine.", "Ten."]),  # malformed
        videomme_row("303", "medium", "otherVideo2", 1, answer="E"),  # malformed: no option E
    ], VIDEOMME_SCHEMA)
    touch(tmp_path, "data/fFjv93ACGo8.mp4")
    touch(tmp_path, "data/-dfvdKf-KR0.mkv")
    touch(tmp_path, "data/otherVideo1.mp4")
    touch(tmp_path, "data/otherVideo2.mp4")
    write_text(tmp_path, "subtitle/fFjv93ACGo8.srt", SRT)

    data = get_benchmark("videomme").read(tmp_path)

    first, second, long_ = data.samples
    assert [s.sample_id for s in data.samples] == ["001-1", "001-2", "601-1"]
    assert first.options == ("Seven.", "Eight.", "Nine.", "Ten.")
    assert (first.answer_index, second.answer_index, long_.answer_index) == (1, 3, 2)
    assert first.meta["duration"] == "short" and long_.meta["duration"] == "long"
    assert first.meta["videoID"] == "fFjv93ACGo8" and first.meta["video_number"] == "001"
    assert first.meta["subtitle_path"] == str(tmp_path / "subtitle/fFjv93ACGo8.srt")
    assert long_.meta["subtitle_path"] is None
    assert sorted(v.key for v in data.videos) == ["data/-dfvdKf-KR0.mkv", "data/fFjv93ACGo8.mp4"]
    (missing,) = data.missing
    assert missing.sample.sample_id == "301-1" and missing.path == str(tmp_path / "data/absentVideo.mp4")
    assert [b.line for b in data.bad] == [5, 6]
    assert "must start with 'A'" in data.bad[0].reason and "only 4 options" in data.bad[1].reason

    # "with subtitles": the lines of the cues around the selected frames, tags stripped, in time order.
    assert data.subtitle_lines(first, [21.0, 5.0]) == ["when we are about to do something", "new",
                                                       "much later & elsewhere"]
    assert data.subtitle_lines(first, [2.0]) == ["when we are about to do something"]
    assert data.subtitle_lines(long_, [2.0]) == []  # no subtitle file: no lines


# --------------------------------------------------------------------------- LongVideoBench


def test_longvideobench_json_view(tmp_path):
    records = [
        lvb_record("86CxyhFV9MI_0", "86CxyhFV9MI", starting_timestamp_for_subtitles=100.0, duration_group=3600),
        lvb_record("86CxyhFV9MI_1", "86CxyhFV9MI", n_options=4, correct=3, question_category="T3O",
                   starting_timestamp_for_subtitles=100.0, duration_group=3600),
        lvb_record("bad_0", "86CxyhFV9MI", correct=9),  # malformed: no option 9
        lvb_record("gone_0", "noSuchVideo", duration_group=15),  # its video is missing
    ]
    text = json.dumps(records, indent=2)
    third_record_line = [i for i, line in enumerate(text.split("\n"), start=1) if line == "  {"][2]
    write_text(tmp_path, "lvb_val.json", text)
    touch(tmp_path, "videos/86CxyhFV9MI.mp4")
    write_text(tmp_path, "subtitles/86CxyhFV9MI_en.json", json.dumps([
        {"timestamp": [101.0, 104.0], "text": "<i>first</i> words"},
        {"timestamp": [150.0, None], "text": "to the end"},
    ]))

    data = get_benchmark("longvideobench").read(tmp_path)

    assert data.view == "json"
    five, four = data.samples
    assert five.options == ("opt a", "opt b", "opt c", "opt d", "opt e") and four.options[-1] == "opt d"
    assert (five.answer_index, four.answer_index, four.answer) == (1, 3, "opt d")
    assert five.meta["duration_group"] == 3600 and four.meta["question_category"] == "T3O"
    assert five.meta["subtitle_offset_s"] == 100.0 and five.meta["duration_s"] == 512.3
    assert five.meta["subtitle_path"] == str(tmp_path / "subtitles/86CxyhFV9MI_en.json")
    assert data.videos[0].key == "videos/86CxyhFV9MI.mp4"
    (bad,) = data.bad
    assert bad.line == third_record_line and "'correct_choice' is 9" in bad.reason
    assert data.missing[0].sample.meta["duration_group"] == 15
    # The subtitle offset moves cues onto the clip: 101-104 s in the source is 1-4 s in the clip.
    assert data.subtitle_lines(five, [2.0]) == ["first words"]
    assert data.subtitle_lines(five, [60.0]) == ["to the end"]  # null end: lasts to the clip's end
    assert data.subtitle_lines(five, [20.0]) == []


def test_longvideobench_parquet_view_unpads_options_and_both_views_prefer_json(tmp_path):
    write_parquet(tmp_path, "validation-00000-of-00001.parquet", [
        lvb_parquet_row("v1_0", "v1", ["a", "b", "c", "d"], correct=3),
        lvb_parquet_row("v1_1", "v1", ["a", "b", "c", "d", "e"], correct=4),
        lvb_parquet_row("v1_2", "v1", ["a", "N/A", "c", "d"]),  # malformed: padding before an option
    ], LVB_SCHEMA)
    touch(tmp_path, "videos/v1.mp4")
    write_text(tmp_path, "subtitles/v1_en.json",
               json.dumps([{"start": "00:00:01.500", "end": "00:00:03.000", "line": "hello"}]))

    data = get_benchmark("longvideobench").read(tmp_path)

    assert data.view == "parquet"
    four, five = data.samples
    assert four.options == ("a", "b", "c", "d") and (four.answer_index, four.answer) == (3, "d")
    assert len(five.options) == 5 and five.answer == "e"
    (bad,) = data.bad
    assert bad.line == 3 and "padding" in bad.reason
    assert data.subtitle_lines(four, [2.0]) == ["hello"]

    write_text(tmp_path, "lvb_val.json", json.dumps([lvb_record("j_0", "v1")]))
    assert get_benchmark("longvideobench").read(tmp_path).view == "json"
    assert get_benchmark("longvideobench").read(tmp_path, view="parquet").view == "parquet"


# --------------------------------------------------------------------------- MLVU


def test_mlvu_json_view(tmp_path):
    root = tmp_path / "MLVU"
    plot_text = json.dumps([
        mlvu_record("movie101_66.mp4"),
        {**mlvu_record("movie101_66.mp4"), "candidates": None},  # malformed: no candidates
        mlvu_record("movie101_63.mp4", answer="Red"),
    ], indent=2)
    second_record_line = [i for i, line in enumerate(plot_text.split("\n"), start=1) if line == "  {"][1]
    write_text(root, "json/1_plotQA.json", plot_text)
    write_text(root, "json/2_needle.json", json.dumps([
        mlvu_record("needle_32.mp4", answer="2", candidates=("1", "2", "5", "4"), qtype="findNeedle"),
        mlvu_record("needle_99.mp4", qtype="findNeedle"),  # its video is missing
    ]))
    write_text(root, "json/9_summary.json", json.dumps([{"video": "x.mp4", "question": "Summarize", "answer": "..."}]))
    touch(root, "video/1_plotQA/movie101_66.mp4")
    touch(root, "video/1_plotQA/movie101_63.mp4")
    touch(root, "video/2_needle/needle_32.mp4")

    data = get_benchmark("mlvu").read(tmp_path)  # the repository root, holding MLVU/

    assert data.view == "json"
    assert len(data.files) == 2  # the open-ended 9_summary is not read
    plot0, plot2, needle = data.samples
    assert [s.sample_id for s in data.samples] == ["plotQA_0", "plotQA_2", "needle_0"]  # ids keep file positions
    assert (plot2.answer_index, needle.answer_index, needle.answer) == (1, 1, "2")
    assert needle.meta["task"] == "needle" and needle.meta["question_type"] == "findNeedle"
    assert plot0.meta["duration_s"] == 246.0
    assert data.videos[0].key == "MLVU/video/1_plotQA/movie101_66.mp4"
    (bad,) = data.bad
    assert bad.line == second_record_line and "'candidates' must be a list of texts, got None" in bad.reason
    assert data.missing[0].sample.meta["task"] == "needle"


def test_mlvu_parquet_view(tmp_path):
    write_parquet(tmp_path, "mlvu/test-00000-of-00001.parquet", [
        mlvu_parquet_row("movie101_66.mp4", "plotQA", "A", "Q1113"),  # bare name: found under video/1_plotQA/
        mlvu_parquet_row("count/count_126.mp4", "count", "C", "Q2001"),  # {task}/{file}
        mlvu_parquet_row("movie101_1.mp4", "plotQA", "B", "Q1114",
                         question="What color is it?\n(A) Yellow\n(B) Red\n(C) Cyan\n(D) Blue"),  # malformed
        mlvu_parquet_row("surveil_20.mp4", "anomaly_reco", "B", "Q3001"),  # its video is missing
    ], MLVU_SCHEMA)
    touch(tmp_path, "video/1_plotQA/movie101_66.mp4")
    touch(tmp_path, "count/count_126.mp4")

    data = get_benchmark("mlvu").read(tmp_path)

    assert data.view == "parquet"
    plot, count = data.samples
    assert (plot.sample_id, plot.question, plot.options) == ("Q1113", "What color is it?",
                                                             ("Yellow", "Red", "Green", "Blue"))
    assert (plot.answer_index, count.answer_index, count.meta["task"]) == (0, 2, "count")
    assert plot.meta["question_raw"].startswith("What color is it?\n(A) Yellow\n")  # lmms-eval's prompt text
    assert [v.key for v in data.videos] == ["video/1_plotQA/movie101_66.mp4", "count/count_126.mp4"]
    (bad,) = data.bad
    assert bad.line == 3 and "differ from 'candidates'" in bad.reason
    assert data.missing[0].sample.sample_id == "Q3001"


# --------------------------------------------------------------------------- subtitles


QUESTION_IDS = {  # what `hfs select` exports as question_id: the id as the benchmark's files write it
    ("nextqa", "parquet"): [0, 1, 0],  # NExT-QA's qid, per video (the video is the exported video_path)
    ("videomme", "parquet"): ["001-1", "001-2", "601-1"],
    ("longvideobench", "json"): ["lvbVidA_0", "lvbVidA_1", "lvbVidB_0"],
    ("longvideobench", "parquet"): ["lvbVidA_0", "lvbVidA_1", "lvbVidB_0"],
    ("mlvu", "json"): [None, None, None],  # the JSON release has no id
    ("mlvu", "parquet"): ["Q1113", "Q2001", "Q1114"],
}


@pytest.mark.parametrize(("bench", "view"), LAYOUTS)
def test_question_id_is_the_id_the_benchmarks_files_write(tmp_path, bench, view):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    layout = write_layout(bench, view, tmp_path / "data", [video])
    benchmark = get_benchmark(bench)
    samples = benchmark.read(layout.root).samples
    assert [s.sample_id for s in samples] == list(layout.answerable)
    assert [benchmark.question_id(s) for s in samples] == QUESTION_IDS[bench, view]


def test_parse_srt_strips_tags_keeps_overlaps_and_joins_lines():
    text = ("\ufeff1\r\n00:00:01,240 --> 00:00:06,879\r\n<font color=\"white\" size=\".72c\">when we</font>\r\n"
            "<i>are about</i>\r\n\r\n2\r\n00:00:04,160 --> 00:00:10,519 X1:0\r\n{\\an8}<b>new</b>\r\n"
            "3\r\n00:01:02,5 --> 01:00:03,000\r\nno blank line before this block\r\n\r\n"
            "4\r\n00:00:11,000 --> 00:00:12,000\r\n<font color=\"white\"></font>\r\n")
    assert parse_srt(text) == [
        Cue(1.24, 6.879, "when we are about"),
        Cue(4.16, 10.519, "new"),  # overlaps the first; kept
        Cue(62.5, 3603.0, "no blank line before this block"),
        # cue 4 has no text once the tags are gone: dropped
    ]


def test_lvb_cue_forms_with_offset_and_open_end():
    timestamp_form = [{"timestamp": [10.0, 12.5], "text": "a <font color=\"red\">b</font>"},
                      {"timestamp": [1.0, 4.0], "text": "before the clip"},
                      {"timestamp": [20, None], "text": "open"}]
    assert parse_lvb_cues(timestamp_form, offset_s=5.0, duration_s=30.0) == [
        Cue(5.0, 7.5, "a b"), Cue(15.0, 30.0, "open")]  # 1-4 s ends before the clip starts at 5 s: dropped
    assert parse_lvb_cues(timestamp_form)[2].end == math.inf
    line_form = [{"start": "00:01:02.250", "end": "00:01:04.000", "line": "hi &amp; bye"}]
    assert parse_lvb_cues(line_form, offset_s=2.0) == [Cue(60.25, 62.0, "hi & bye")]
    with pytest.raises(ValueError, match="cue 0 has neither"):
        parse_lvb_cues([{"begin": 1}])


def test_read_subtitle_file_tells_the_forms_apart_and_names_bad_files(tmp_path):
    srt = write_text(tmp_path, "a.srt", "1\n00:00:01,000 --> 00:00:02,000\nhi\n")
    lvb = write_text(tmp_path, "b.json", json.dumps([{"timestamp": [1, 2], "text": "yo"}]))
    broken = write_text(tmp_path, "c.json", "{not json")
    assert read_subtitle_file(str(srt)) == [Cue(1.0, 2.0, "hi")]
    assert read_subtitle_file(str(lvb)) == [Cue(1.0, 2.0, "yo")]
    with pytest.raises(SubtitleError, match="c.json"):
        read_subtitle_file(str(broken))


CUES = [Cue(20.0, 22.0, "late"), Cue(1.0, 6.0, "first"), Cue(4.0, 10.0, "overlapping"),
        Cue(12.0, 12.0, "instant"), Cue(14.0, 16.0, "between")]


@pytest.mark.parametrize(("times", "window", "expected"), [
    ([5.0], 0.0, ["first", "overlapping"]),  # both overlapping cues cover t = 5
    ([6.0], 0.0, ["overlapping"]),  # a cue ending at t does not cover it: [start, end)
    ([1.0], 0.0, ["first"]),  # a cue starting at t does
    ([11.0], 0.0, []),
    ([11.0], 1.0, ["instant"]),  # 10-12 s: the cue ending at 10 s is out, the instant at 12 s in
    ([11.0], 1.5, ["overlapping", "instant"]),  # 9.5-12.5 s reaches the end of 4-10 s
    ([21.0, 5.0, 5.5, 2.0], 0.0, ["first", "overlapping", "late"]),  # deduplicated, in time order
    ([17.5], 2.0, ["between"]),  # 15.5-19.5 s reaches 14-16 but not 20-22
])
def test_window_rule(times, window, expected):
    assert lines_near(CUES, times, window) == expected


def test_window_must_not_be_negative():
    with pytest.raises(ValueError, match="window_s"):
        cues_near(CUES, [1.0], -1.0)
