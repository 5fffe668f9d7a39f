"""Tests of hfs.manifests: formats, containers, line numbers, bad records, dedupe, paths."""

from __future__ import annotations

import json
import logging

import pytest

from hfs.manifests import (
    ManifestError,
    RecordError,
    VideoItem,
    list_formats,
    make_video_id,
    read_manifest,
    read_manifests,
    register_format,
)
from hfs.manifests import formats as formats_module

MC_HUMAN = "<image>\nWhat is the man doing?\nOptions:\n(A) running\n(B) walking\n(C) sitting"


def write(folder, name: str, text: str):
    """Write `text` to folder/name (creating folders) and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(*records) -> str:
    """JSON Lines text of `records` (strings are written as they are)."""
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def only_bad(manifest):
    """The single BadRecord of a manifest (fails if there are none or several)."""
    assert len(manifest.bad) == 1, manifest.bad
    return manifest.bad[0]


# --------------------------------------------------------------------------- registry


def test_builtin_formats_are_registered_with_catch_all_last():
    names = list_formats()
    assert {"jsonl", "llava_video", "videochat2"} <= set(names)
    assert names[-1] == "jsonl"


def test_register_format_adds_a_sniffed_format(tmp_path, monkeypatch):
    monkeypatch.setattr(formats_module, "_FORMATS", dict(formats_module._FORMATS))

    @register_format("clips_csvish")
    class ClipFormat:
        hint = "'clip'"

        def sniff(self, record):
            return "clip" in record

        def parse(self, record, ctx):
            video = formats_module.make_video(record, ctx, record["clip"])
            return video, []

    assert "clips_csvish" in list_formats()
    m = read_manifest(write(tmp_path, "m.jsonl", jsonl({"clip": "x.mp4"})))
    assert [v.key for v in m.videos] == ["x.mp4"]
    with pytest.raises(ValueError, match="already registered"):
        register_format("clips_csvish")(ClipFormat)


def test_unknown_forced_format_is_a_manifest_error(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl({"video": "a.mp4"}))
    with pytest.raises(ManifestError, match="unknown manifest format 'nope'"):
        read_manifest(path, fmt="nope")


# --------------------------------------------------------------------------- jsonl format


def test_jsonl_record_with_window_options_and_letter_answer(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl(
        {"video": "clips/a.mp4", "id": "q1", "start": 1, "end": 5.5, "question": "Colour?",
         "options": ["red", "green", "blue"], "answer": "C", "qtype": "descriptive"},
    ))
    m = read_manifest(path)
    assert m.bad == []
    (video,) = m.videos
    assert video == VideoItem(
        video_id=make_video_id("clips/a.mp4", 1.0, 5.5),
        path=str(tmp_path / "clips" / "a.mp4"),
        key="clips/a.mp4", start=1.0, end=5.5, source=f"{path}:1",
    )
    (sample,) = m.samples
    assert sample.sample_id == "q1"
    assert sample.video_id == video.video_id
    assert sample.question == "Colour?"
    assert sample.options == ("red", "green", "blue")
    assert (sample.answer_index, sample.answer) == (2, "blue")
    assert sample.meta == {"qtype": "descriptive", "answer_raw": "C"}
    assert sample.source == f"{path}:1"


@pytest.mark.parametrize(
    ("answer", "index"),
    [("B", 1), ("B.", 1), ("(B)", 1), ("B) green", 1), (1, 1), (0, 0), ("green", 1), ("  Green ", 1), ("C", 2)],
)
def test_answer_as_letter_index_or_text(tmp_path, answer, index):
    path = write(tmp_path, "m.jsonl", jsonl(
        {"video": "a.mp4", "question": "Q?", "options": ["red", "green", "blue"], "answer": answer}))
    (sample,) = read_manifest(path, strict=True).samples
    assert sample.answer_index == index
    assert sample.answer == ["red", "green", "blue"][index]


def test_option_text_beats_letter_when_options_are_letters(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl(
        {"video": "a.mp4", "question": "Which grade?", "options": ["B", "A"], "answer": "A"}))
    assert read_manifest(path).samples[0].answer_index == 1


def test_options_as_letter_dict(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl(
        {"video": "a.mp4", "question": "Q?", "options": {"B": "green", "A": "red"}, "answer": "B"}))
    (sample,) = read_manifest(path).samples
    assert sample.options == ("red", "green")
    assert sample.answer_index == 1


def test_open_ended_and_video_only_records(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl(
        {"video": "a.mp4", "question": "What happens?", "answer": "A dog runs."},
        {"video": "b.mp4"},
        {"video": "c.mp4", "question": "How many cats?", "answer": 3},
        {"video": "d.mp4", "question": "Unlabelled test question?", "options": ["x", "y"]},
    ))
    m = read_manifest(path)
    assert m.bad == []
    assert [v.key for v in m.videos] == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    open_ended, count, unlabelled = m.samples
    assert (open_ended.options, open_ended.answer, open_ended.answer_index) == ((), "A dog runs.", None)
    assert open_ended.sample_id == "m:1"  # no id: file-stem:line
    assert count.answer == "3"
    assert (unlabelled.options, unlabelled.answer, unlabelled.answer_index) == (("x", "y"), None, None)


# --------------------------------------------------------------------------- llava_video format


def test_llava_multi_turn_mc_and_open_ended(tmp_path):
    record = {
        "id": "v_abc", "data_source": "src", "video": "a.mp4",
        "conversations": [
            {"from": "human", "value": MC_HUMAN + "\nAnswer with the option's letter."},
            {"from": "gpt", "value": "B. walking"},
            {"from": "human", "value": "Where is he?"},
            {"from": "gpt", "value": "In a park."},
        ],
    }
    path = write(tmp_path, "llava.json", json.dumps([record]))
    m = read_manifest(path)
    assert m.bad == []
    (video,) = m.videos
    mc, oe = m.samples
    assert (mc.sample_id, oe.sample_id) == ("v_abc#0", "v_abc#1")
    assert mc.video_id == oe.video_id == video.video_id
    assert mc.question == "What is the man doing?"
    assert mc.options == ("running", "walking", "sitting")
    assert (mc.answer_index, mc.answer) == (1, "walking")
    assert mc.meta["prompt_suffix"] == "Answer with the option's letter."
    assert mc.meta["data_source"] == "src"
    assert (oe.question, oe.options, oe.answer, oe.answer_index) == ("Where is he?", (), "In a park.", None)


@pytest.mark.parametrize("style", ["A. {}", "A) {}", "(A) {}"])
def test_llava_options_without_header(tmp_path, style):
    lines = [style.replace("A", letter).format(text) for letter, text in zip("ABCD", ["cat", "dog", "cow", "owl"])]
    human = "<video>\nWhich animal appears?\n" + "\n".join(lines) + "\nRespond with the letter."
    record = {"id": "x", "video": "a.mp4", "conversations": [
        {"from": "human", "value": human}, {"from": "gpt", "value": "D"}]}
    (sample,) = read_manifest(write(tmp_path, "l.json", json.dumps([record])), strict=True).samples
    assert sample.sample_id == "x"  # one turn: no "#0"
    assert sample.question == "Which animal appears?"
    assert sample.options == ("cat", "dog", "cow", "owl")
    assert sample.answer_index == 3
    assert sample.meta["prompt_suffix"] == "Respond with the letter."


def test_llava_data_source_fallback(tmp_path):
    write(tmp_path, "videos/ds1/academic/x.mp4", "")
    write(tmp_path, "videos/academic/y.mp4", "")
    write(tmp_path, "videos/ds1/academic/y.mp4", "")
    conv = [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}]
    path = write(tmp_path, "ann/l.jsonl", jsonl(
        {"id": "1", "data_source": "ds1", "video": "academic/x.mp4", "conversations": conv},
        {"id": "2", "data_source": "ds1", "video": "academic/y.mp4", "conversations": conv},
        {"id": "3", "data_source": "ds1", "video": "academic/z.mp4", "conversations": conv},
    ))
    m = read_manifest(path, video_root=tmp_path / "videos")
    x, y, z = m.videos
    assert (x.key, x.path) == ("ds1/academic/x.mp4", str(tmp_path / "videos/ds1/academic/x.mp4"))
    assert x.video_id == make_video_id("ds1/academic/x.mp4")
    assert (y.key, y.path) == ("academic/y.mp4", str(tmp_path / "videos/academic/y.mp4"))  # root first
    assert (z.key, z.path) == ("academic/z.mp4", str(tmp_path / "videos/academic/z.mp4"))  # neither: as written


# --------------------------------------------------------------------------- videochat2 format


def test_videochat2_with_and_without_options_and_window(tmp_path):
    records = [
        {"video": "v/a.mp4", "QA": [
            {"i": "Watch carefully.", "q": "Question: What is the man doing?\nOptions:\n(A) running\n(B) walking",
             "a": "Answer: (B) walking"},
            {"i": "", "q": "Describe the scene.", "a": "A man walks in a park."},
        ]},
        {"video": "v/a.mp4", "start": 2, "end": 8, "QA": [{"i": "x", "q": "Is it raining?", "a": "No."}]},
    ]
    path = write(tmp_path, "vc2.json", json.dumps(records, indent=1))
    m = read_manifest(path)
    assert m.bad == []
    full, window = m.videos
    assert (full.start, full.end) == (None, None)
    assert (window.start, window.end) == (2.0, 8.0)
    assert window.video_id == make_video_id("v/a.mp4", 2.0, 8.0) != full.video_id
    mc, oe, win = m.samples
    assert (mc.question, mc.options, mc.answer_index, mc.answer) == (
        "What is the man doing?", ("running", "walking"), 1, "walking")
    assert mc.meta["instruction"] == "Watch carefully."
    assert mc.sample_id == "vc2:2#0"  # the first record starts on line 2 of the indented list
    assert (oe.options, oe.answer, oe.answer_index) == ((), "A man walks in a park.", None)
    assert "instruction" not in oe.meta
    assert (win.video_id, win.answer) == (window.video_id, "No.")


def test_videochat2_unresolvable_answer_is_bad(tmp_path):
    path = write(tmp_path, "vc2.jsonl", jsonl(
        {"video": "a.mp4", "QA": [{"q": "Q?\nOptions:\n(A) x\n(B) y", "a": "(E) z"}]}))
    bad = only_bad(read_manifest(path))
    assert (bad.line, bad.reason) == (1, "answer '(E) z' names option E but there are only 2 options")


# --------------------------------------------------------------------------- containers


def test_json_list_in_jsonl_file_and_jsonl_in_json_file(tmp_path):
    records = [{"video": "a.mp4", "question": "Q1?", "answer": "x"}, {"video": "b.mp4", "question": "Q2?", "answer": "y"}]
    as_list = read_manifest(write(tmp_path, "list.jsonl", json.dumps(records)))
    as_lines = read_manifest(write(tmp_path, "lines.json", jsonl(*records)))
    for m in (as_list, as_lines):
        assert m.bad == []
        assert [v.key for v in m.videos] == ["a.mp4", "b.mp4"]
        assert [s.question for s in m.samples] == ["Q1?", "Q2?"]
    assert [s.source.rsplit(":", 1)[1] for s in as_lines.samples] == ["1", "2"]


def test_single_object_holding_a_list_and_single_record_object(tmp_path):
    holder = '{\n  "version": 2,\n  "data": [\n    {"video": "a.mp4"},\n    {"video": "b.mp4"}\n  ]\n}\n'
    m = read_manifest(write(tmp_path, "holder.json", holder))
    assert [(v.key, v.source.rsplit(":", 1)[1]) for v in m.videos] == [("a.mp4", "4"), ("b.mp4", "5")]
    single = json.dumps({"video": "c.mp4", "question": "Q?"}, indent=2)
    m = read_manifest(write(tmp_path, "single.json", single))
    assert [v.key for v in m.videos] == ["c.mp4"]


def test_single_object_that_is_neither_record_nor_holder(tmp_path):
    no_video = read_manifest(write(tmp_path, "a.json", '{"question": "Q?", "options": ["x", "y"]}'))
    assert only_bad(no_video).reason.startswith("no 'video' in record")
    two_lists = read_manifest(write(tmp_path, "b.json", '{"train": [{"video": "a.mp4"}], "val": []}'))
    assert only_bad(two_lists).reason == "a JSON object with several lists (train, val); cannot tell which holds the records"


def test_empty_manifests_give_nothing(tmp_path):
    for name, text in [("empty.jsonl", ""), ("blank.json", "\n  \n"), ("list.json", "[ ]")]:
        m = read_manifest(write(tmp_path, name, text))
        assert (m.videos, m.samples, m.bad) == ([], [], [])


def test_missing_or_unreadable_manifest_raises(tmp_path):
    with pytest.raises(ManifestError, match=r"nope\.jsonl: cannot read manifest"):
        read_manifest(tmp_path / "nope.jsonl")
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path)
    (tmp_path / "latin1.jsonl").write_bytes(b'{"video": "caf\xe9.mp4"}\n')
    with pytest.raises(ManifestError, match=r"latin1\.jsonl: manifest is not UTF-8"):
        read_manifest(tmp_path / "latin1.jsonl")


# --------------------------------------------------------------------------- bad records and line numbers


def test_bad_jsonl_lines_report_file_and_line(tmp_path):
    text = jsonl(
        {"video": "ok.mp4"},                      # 1
        '{"video": "broken.mp4"',                 # 2 not JSON
        "",                                       # 3 blank: skipped, still counted
        '["a.mp4"]',                              # 4 not an object
        {"question": "Where is the video?"},      # 5 no video
        {"video": "ok2.mp4"},                     # 6
    )
    path = write(tmp_path, "m.jsonl", text)
    m = read_manifest(path)
    assert [v.key for v in m.videos] == ["ok.mp4", "ok2.mp4"]
    assert [v.source for v in m.videos] == [f"{path}:1", f"{path}:6"]
    assert [(b.file, b.line) for b in m.bad] == [(str(path), 2), (str(path), 4), (str(path), 5)]
    assert m.bad[0].reason.startswith("not valid JSON")
    assert m.bad[1].reason == "record is a list, expected an object"
    assert m.bad[2].reason.startswith("no 'video' in record")


def test_broken_first_jsonl_line_does_not_hide_the_rest(tmp_path):
    path = write(tmp_path, "m.jsonl", '{"video": "a.mp4"\n{"video": "b.mp4"}\n')
    m = read_manifest(path)
    assert [v.key for v in m.videos] == ["b.mp4"]
    assert only_bad(m).line == 1


def test_pretty_json_list_reports_record_start_lines(tmp_path):
    text = """[
  {
    "video": "a.mp4",
    "question": "Q?",
    "options": ["x", "y"],
    "answer": "B"
  },
  {"video": "b.mp4",
   "start": 5, "end": 3},

  {
    "video": "c.mp4", "question": "Q?", "options": ["x", "y"], "answer": "maybe"
  }
]
"""
    path = write(tmp_path, "pretty.json", text)
    m = read_manifest(path)
    assert [v.source for v in m.videos] == [f"{path}:2"]
    assert [s.source for s in m.samples] == [f"{path}:2"]
    assert [(b.line, b.reason) for b in m.bad] == [
        (8, "start (5) must be before end (3)"),
        (11, "answer 'maybe' is neither an option letter, an index nor one of the 2 options"),
    ]


def test_syntax_error_in_json_list_keeps_earlier_records(tmp_path):
    text = '[\n  {"video": "a.mp4"},\n  {"video": "b.mp4",},\n  {"video": "c.mp4"}\n]\n'
    m = read_manifest(write(tmp_path, "m.json", text))
    assert [v.key for v in m.videos] == ["a.mp4"]
    bad = only_bad(m)
    assert bad.line == 3 and bad.reason.startswith("invalid JSON") and "rest of the list was not read" in bad.reason


def test_syntax_error_in_pretty_object_is_reported_once(tmp_path):
    text = '{\n  "data": [\n    {"video": "a.mp4"}\n    {"video": "b.mp4"}\n  ]\n}\n'
    bad = only_bad(read_manifest(write(tmp_path, "m.json", text)))
    assert bad.line == 4 and "the file was not read" in bad.reason


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"video": 3}, "'video' must be a string, got number"),
        ({"video": "  "}, "'video' is empty"),
        ({"video": "a.mp4", "start": "1"}, "'start' must be a number of seconds, got string"),
        ({"video": "a.mp4", "start": True}, "'start' must be a number of seconds, got boolean"),
        ({"video": "a.mp4", "start": -1}, "'start' is negative (-1)"),
        ({"video": "a.mp4", "start": 4, "end": 4}, "start (4) must be before end (4)"),
        ({"video": "a.mp4", "id": ["x"]}, "'id' must be a string or an integer, got list"),
        ({"video": "a.mp4", "question": 7}, "'question' must be a string, got number"),
        ({"video": "a.mp4", "question": " ", "options": ["x", "y"]}, "empty question with options"),
        ({"video": "a.mp4", "question": "Q?", "options": "x,y"}, "'options' must be a list or an object letter -> text, got string"),
        ({"video": "a.mp4", "question": "Q?", "options": ["x", 2]}, "option B must be a non-empty string, got number"),
        ({"video": "a.mp4", "question": "Q?", "options": ["x"], "answer": "A"}, "a multiple-choice question needs at least 2 options, got 1"),
        ({"video": "a.mp4", "question": "Q?", "options": {"A": "x", "C": "y"}}, "option letters must be A, B, C... without gaps, got A, C"),
        ({"video": "a.mp4", "question": "Q?", "options": ["x", "y"], "answer": 2}, "answer index 2 is out of range for 2 options"),
        ({"video": "a.mp4", "question": "Q?", "options": ["x", "y"], "answer": True}, "'answer' must be a letter, an index or an option's text, got boolean"),
        ({"video": "a.mp4", "question": "Q?", "answer": ""}, "empty answer"),
        ({"video": "a.mp4", "answer": "x"}, "'options' or 'answer' given without a 'question'"),
        ({"video": "a.mp4", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},
         "conversations[0]: expected from='human', got 'gpt'"),
        ({"video": "a.mp4", "conversations": [{"from": "human", "value": "Q?"}]}, "'conversations' has 1 turns; expected human/gpt pairs"),
        ({"video": "a.mp4", "conversations": [{"from": "human", "value": "Q?\nOptions:\nnone"}, {"from": "gpt", "value": "A"}]},
         "'Options:' block has no lines like 'A. text' or '(A) text'"),
        ({"video": "a.mp4", "QA": [{"q": "Q?\nA. x\nB. y\nD. z", "a": "A"}]}, "option letters out of order at 'D. z'"),
        ({"video": "a.mp4", "QA": []}, "'QA' must be a non-empty list, got list"),
        ({"video": "a.mp4", "QA": [{"q": None, "a": "x"}]}, "QA[0]: missing required key 'q'"),
        ({"video": "a.mp4", "QA": [{"q": "ok?", "a": "x"}, {"q": "Q?\n(A) x\n(B) y", "a": "nope"}]},
         "turn 1: answer 'nope' is neither an option letter, an index nor one of the 2 options"),
    ],
)
def test_bad_record_reasons(tmp_path, record, reason):
    path = write(tmp_path, "m.jsonl", jsonl({"video": "fine.mp4"}, record))
    m = read_manifest(path)
    assert [v.key for v in m.videos] == ["fine.mp4"]  # the bad record adds nothing
    assert m.samples == []
    assert str(only_bad(m)) == f"{path}:2: {reason}"


@pytest.mark.parametrize("value", [None, True, 0, -3, 1.5, float("nan"), "", "x", [], [1], {}, {"a": 1}])
def test_any_field_value_gives_a_record_or_a_bad_record(tmp_path, value):
    base = {"video": "a.mp4", "id": "i", "start": 0, "end": 2, "question": "Q?", "options": ["x", "y"], "answer": "A"}
    lines = [{**base, key: value} for key in base]
    llava = {"video": "a.mp4", "conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "x"}]}
    lines += [{**llava, "conversations": value}, {**llava, "conversations": [value, value]}]
    lines += [{"video": "a.mp4", "QA": value}, {"video": "a.mp4", "QA": [value]}, {"video": "a.mp4", "QA": [{"q": value, "a": value}]}]
    m = read_manifest(write(tmp_path, "m.jsonl", jsonl(*lines)))
    read = {int(s.source.rsplit(":", 1)[1]) for s in m.samples} | {int(v.source.rsplit(":", 1)[1]) for v in m.videos}
    assert read | {b.line for b in m.bad} >= set(range(1, len(lines) + 1))


def test_strict_raises_with_file_and_line(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl({"video": "a.mp4"}, {"video": "b.mp4", "start": -2}))
    with pytest.raises(ManifestError) as info:
        read_manifest(path, strict=True)
    assert str(info.value) == f"{path}:2: 'start' is negative (-2)"
    assert isinstance(info.value, ValueError) and issubclass(RecordError, ValueError)


def test_bad_record_warnings_are_rate_limited(tmp_path, caplog):
    path = write(tmp_path, "m.jsonl", "not json\n" * 25)
    with caplog.at_level(logging.WARNING, logger="hfs.manifests"):
        m = read_manifest(path)
    assert len(m.bad) == 25
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 21
    assert warnings[0].startswith(f"skipped {path}:1: not valid JSON")
    assert warnings[-1] == "5 more bad records skipped (not logged); see Manifest.bad"


# --------------------------------------------------------------------------- dedupe, ids and paths


def test_same_video_within_and_across_manifests_is_one_item(tmp_path):
    a = write(tmp_path, "a.jsonl", jsonl(
        {"video": "v/x.mp4", "question": "Q1?", "answer": "1"},
        {"video": "./v/x.mp4", "question": "Q2?", "answer": "2"},
        {"video": "v/x.mp4", "start": 0, "end": 10, "question": "Q3?", "answer": "3"},
    ))
    b = write(tmp_path, "b.json", json.dumps([{"video": "v/x.mp4", "QA": [{"q": "Q4?", "a": "4"}]}]))
    m = read_manifests([a, b])
    assert m.bad == []
    whole, clip = m.videos
    assert whole.source == f"{a}:1" and clip.source == f"{a}:3"
    assert (clip.start, clip.end) == (0.0, 10.0)
    assert [s.video_id for s in m.samples] == [whole.video_id, whole.video_id, clip.video_id, whole.video_id]
    assert [s.answer for s in m.samples] == ["1", "2", "3", "4"]


@pytest.mark.parametrize("spelling", ["v/./x.mp4", "v//x.mp4", "v/w/../x.mp4", "./v/x.mp4", "v\\x.mp4", "v/x.mp4/"])
def test_one_file_written_two_ways_is_one_video(tmp_path, spelling):
    assert make_video_id(spelling) == make_video_id("v/x.mp4")
    assert make_video_id(spelling, 1.0, 2.0) == make_video_id("v/x.mp4", 1.0, 2.0)
    if "\\" in spelling:
        return  # on POSIX "v\\x.mp4" names another file: the manifest reports the clash as a bad record
    m = read_manifest(write(tmp_path, "m.jsonl", jsonl(
        {"video": spelling, "question": "Q1?", "answer": "1"}, {"video": "v/x.mp4", "question": "Q2?", "answer": "2"})))
    assert m.bad == [] and len(m.videos) == 1
    assert [s.video_id for s in m.samples] == [m.videos[0].video_id] * 2


def test_ids_of_keys_already_normal_do_not_change():
    """Ids of existing caches: these are the ids the first release gave."""
    assert make_video_id("videos/a.mp4") == "a-4f44e46d7a89"
    assert make_video_id("/data/LLaVA/academic/x y.mp4") == "x_y-c923064084f6"
    assert make_video_id("clips/a.mp4", 1.0, 5.5) == "a-85071b2e281a"
    assert make_video_id("v\\a.mp4", 2.0) == "a-76ea8bc3987b"
    assert make_video_id("https://host/v/a.mp4") == "a-680a4e906124"  # a scheme is left as written


def test_duplicate_sample_ids_are_made_unique(tmp_path):
    conv = [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "x"}]
    a = write(tmp_path, "cap.json", json.dumps([{"id": "v1", "video": "v1.mp4", "conversations": conv}]))
    b = write(tmp_path, "oe.json", json.dumps([{"id": "v1", "video": "v1.mp4", "conversations": conv}]))
    m = read_manifests([a, b])
    assert [s.sample_id for s in m.samples] == ["v1", "v1@oe:1"]
    assert len(m.videos) == 1


def test_relative_paths_resolve_against_video_root_else_manifest_folder(tmp_path):
    absolute = str(tmp_path / "elsewhere" / "abs.mp4")
    path = write(tmp_path, "ann/m.jsonl", jsonl({"video": "rel/a.mp4"}, {"video": absolute}))
    local = read_manifest(path)
    assert [v.path for v in local.videos] == [str(tmp_path / "ann/rel/a.mp4"), absolute]
    rooted = read_manifest(path, video_root=tmp_path / "videos")
    assert [v.path for v in rooted.videos] == [str(tmp_path / "videos/rel/a.mp4"), absolute]
    assert [v.video_id for v in rooted.videos] == [v.video_id for v in local.videos]  # id from key, not path


def test_same_key_resolving_to_two_files_is_reported(tmp_path):
    a = write(tmp_path, "one/a.jsonl", jsonl({"video": "x.mp4"}))
    b = write(tmp_path, "two/b.jsonl", jsonl({"video": "x.mp4", "question": "Q?"}))
    m = read_manifests([a, b])
    assert [v.path for v in m.videos] == [str(tmp_path / "one/x.mp4")]
    assert m.samples == []
    bad = only_bad(m)
    assert (bad.file, bad.line) == (str(b), 1)
    assert "pass video_root" in bad.reason
    merged = read_manifests([a, b], video_root=tmp_path)
    assert merged.bad == [] and len(merged.videos) == 1 and len(merged.samples) == 1


def test_read_manifests_accepts_a_single_path(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl({"video": "a.mp4"}))
    assert [v.key for v in read_manifests(path).videos] == ["a.mp4"]


def test_forced_format_reads_records_it_would_not_sniff(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl({"video": "a.mp4", "QA": "ignored", "question": "Q?", "answer": "x"}))
    assert only_bad(read_manifest(path)).reason.startswith("'QA' must be a non-empty list")
    (sample,) = read_manifest(path, fmt="jsonl").samples
    assert sample.meta == {"QA": "ignored"}
