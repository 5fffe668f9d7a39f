"""Tests of the reader's memory use: videos-only reads, streamed JSON Lines, slotted records."""

from __future__ import annotations

import codecs
import dataclasses
import json
import pickle
import tracemalloc

import pytest

from hfs.manifests import BadRecord, ManifestError, QASample, VideoItem, read_manifest, read_manifests
from hfs.manifests import reader as reader_module
from hfs.manifests.reader import _read_text, iter_file_records, iter_records

CONV = [{"from": "human", "value": "What is he doing?\nA. running\nB. walking"}, {"from": "gpt", "value": "B"}]


def write(folder, name: str, text: str | bytes):
    """Write `text` (UTF-8, no newline translation) or bytes to folder/name and return the path."""
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def jsonl(*records) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n"


def mixed_manifests(tmp_path):
    """Two files (JSON Lines and a JSON list) with good, duplicate and bad records of every format."""
    a = write(tmp_path, "a.jsonl", jsonl(
        {"video": "v/x.mp4", "id": "q1", "question": "Q1?", "options": ["red", "blue"], "answer": "B"},
        {"video": "./v/x.mp4", "id": "q1", "question": "Q2?", "answer": "open"},  # same video, same id
        '{"video": "broken.mp4"',                                                  # not JSON
        "",
        {"video": "v/y.mp4", "question": "Q?", "options": ["a", "b"], "answer": "E"},  # answer matches no option
        {"video": "v/x.mp4", "start": 0, "end": 10},                               # a window: another clip
        {"video": "w.mp4", "conversations": CONV},
        {"video": "w.mp4", "QA": [{"q": "Q?", "a": "x"}, {"q": "R?", "a": "y"}]},
        {"question": "no video"},
        [1, 2],
    ))
    b = write(tmp_path, "b.json", json.dumps([
        {"video": "v/x.mp4", "id": "q1", "question": "Q3?"},
        {"video": "z.mp4", "start": -1},
        {"video": "z.mp4"},
    ], indent=1))
    return [a, b]


def test_videos_only_read_keeps_no_samples_and_gives_the_same_videos_ids_and_bad_records(tmp_path):
    paths = mixed_manifests(tmp_path)
    full = read_manifests(paths)
    videos_only = read_manifests(paths, samples=False)
    assert len(full.samples) == 6 and len(full.videos) == 4 and len(full.bad) == 5  # the manifest is what it claims
    assert videos_only.samples == []
    assert videos_only.videos == full.videos  # ids, paths, keys, windows and sources alike
    assert [v.video_id for v in videos_only.videos] == [v.video_id for v in full.videos]
    assert videos_only.bad == full.bad  # file, line, reason and kind alike
    assert {s.video_id for s in full.samples} <= {v.video_id for v in videos_only.videos}
    assert read_manifest(paths[0], samples=False).videos == read_manifest(paths[0]).videos


def test_videos_only_read_is_as_strict(tmp_path):
    path = write(tmp_path, "m.jsonl", jsonl({"video": "a.mp4", "question": "Q?", "options": ["x", "y"], "answer": "C"}))
    with pytest.raises(ManifestError) as full:
        read_manifest(path, strict=True)
    with pytest.raises(ManifestError) as videos_only:
        read_manifest(path, strict=True, samples=False)
    assert str(videos_only.value) == str(full.value) == f"{path}:1: answer 'C' names option C but there are only 2 options"


RECORD = '{"video": "a.mp4"}'


@pytest.mark.parametrize("text", [
    "",
    "\n \n\t\n",
    jsonl(RECORD, RECORD, RECORD),
    RECORD + "\n" + RECORD,                                   # no final newline
    "\n\n  " + RECORD + "  \n\n" + RECORD + "\n",            # blank lines and indentation first
    RECORD + "\r\n" + "not json\r\n" + RECORD + "\r\n",      # CRLF
    RECORD + "\r" + RECORD + "\r\r" + RECORD,                 # old Mac line ends
    RECORD + "\n\x0c\n" + RECORD + "\u2028" + "\n\x85" + RECORD + "\n",  # separators that are not line ends
    "\x0c" + RECORD + "\n" + RECORD + "\n",                   # a first character that is not JSON whitespace
    "\ufeff" + jsonl(RECORD, RECORD),                         # a BOM
    RECORD + " " + RECORD + "\n" + RECORD + "\n",             # two objects on the first line
    RECORD + "\n\n\n" + "[1]\n" + "garbage\n",
    '{"video": "a.mp4"\n' + RECORD + "\n",                    # broken first line: JSON Lines
    '{\n  "video": "a.mp4",\n  "x": [1,\n' + "}\n",            # broken pretty-printed object: reported once
    json.dumps({"video": "a.mp4"}, indent=2) + "\n" + RECORD + "\n",  # pretty first record, then lines
    json.dumps({"video": "a.mp4"}, indent=2) + "\n",          # one pretty record
    RECORD + "\n\n",                                          # one record on one line
    '{"data": [' + RECORD + ",\n" + RECORD + "]}\n",           # an object holding the list
    '{"data": [' + RECORD + "]}\n" + RECORD + "\n",           # ... followed by more: JSON Lines
    "[\n" + RECORD + ",\n" + RECORD + "\n]\n",                # a JSON list
    "[\n" + RECORD + ",\n" + RECORD + "\n]\n" + RECORD,       # ... with content after it
    '"just a string"\n' + RECORD + "\n",
])
def test_streamed_file_gives_the_items_of_the_whole_text(tmp_path, text):
    """Every container, line ending and blank gives the same (line, value, error) items, streamed or not."""
    path = write(tmp_path, "m.jsonl", text)
    is_record = lambda obj: "video" in obj  # noqa: E731
    assert list(iter_file_records(str(path), is_record)) == list(iter_records(_read_text(str(path)), is_record))


def test_json_lines_are_not_read_whole(tmp_path, monkeypatch):
    path = write(tmp_path, "m.jsonl", jsonl(RECORD, "oops", RECORD))
    monkeypatch.setattr(reader_module, "_read_text", lambda file: pytest.fail("JSON Lines read whole"))
    assert [(line, error is None) for line, _, error in iter_file_records(str(path))] == [(1, True), (2, False), (3, True)]


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
@pytest.mark.parametrize("where", [10, reader_module._CHUNK - 1, reader_module._CHUNK + 1, 3 * reader_module._CHUNK])
def test_not_utf8_names_the_byte_as_before_and_before_any_record(tmp_path, bom, where):
    # bad records come first (strict would raise on line 1), and a 3-byte character straddles each chunk boundary
    body = ("not json\n" + "é€" * (where // 5 + 1)).encode()[:where]
    body = body.decode("utf-8", "ignore").encode()
    path = write(tmp_path, "m.jsonl", bom + body + b"\n\xe2\x82x\n" + b'{"video": "a.mp4"}\n')
    with pytest.raises(UnicodeDecodeError) as before:  # what the reader read whole, and reported
        open(path, encoding="utf-8-sig").read()
    expected = f"{path}: manifest is not UTF-8 text (byte {before.value.start}: {before.value.reason})"
    for strict in (False, True):
        with pytest.raises(ManifestError) as info:
            read_manifest(path, strict=strict)
        assert str(info.value) == expected


def test_records_have_slots_and_pickle(tmp_path):
    m = read_manifests(mixed_manifests(tmp_path))
    for record in (m.videos[0], m.samples[0], m.bad[0]):
        assert not hasattr(record, "__dict__")
        assert pickle.loads(pickle.dumps(record)) == record
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, dataclasses.fields(record)[0].name, "x")
    assert isinstance(m.videos[0], VideoItem) and isinstance(m.samples[0], QASample) and isinstance(m.bad[0], BadRecord)
    assert m.samples[0].source is m.videos[0].source  # one "file:line" string per record
    assert QASample("s", "v", "Q?", meta={"a": 1}) == QASample("s", "v", "Q?", meta={"b": 2})  # meta is not compared
    assert hash(QASample("s", "v", "Q?", meta={"a": 1})) == hash(QASample("s", "v", "Q?"))


# Bytes per record a videos-only read of N generic records may allocate at its peak. It keeps
# about 390 (a VideoItem, its four strings and its slot in the dedup dict); reading the whole
# text and splitting it into lines peaked at ~630, keeping the samples too at ~1,270, and the
# reader before this test (whole text, split lines, samples, dict-backed records) at ~1,930.
MAX_PEAK_BYTES_PER_RECORD = 520


def test_videos_only_read_memory_grows_with_the_videos_not_the_file(tmp_path, monkeypatch):
    n = 10_000
    monkeypatch.chdir(tmp_path)  # short, fixed strings: "m.jsonl:line" sources and "/v/..." paths
    with open("m.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"video": f"videos/part{i % 100:03d}/clip_{i:07d}.mp4", "id": f"q{i}",
                                "question": f"What happens after the person picks up object {i}?",
                                "options": ["A. walks away", "B. sits down", "C. opens the door", "D. waves"],
                                "answer": "B"}) + "\n")
    read_manifests("m.jsonl", video_root="/v", samples=False)  # imports and caches, outside the measure
    tracemalloc.start()
    try:
        m = read_manifests("m.jsonl", video_root="/v", samples=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(m.videos) == n and m.samples == [] and m.bad == []
    assert peak / n < MAX_PEAK_BYTES_PER_RECORD, f"{peak / n:.0f} bytes per record at the peak"
