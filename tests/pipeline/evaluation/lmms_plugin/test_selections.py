"""The lookup of a question's selection from an `hfs select` file, as lmms-eval's model `hfs` makes it:
the benchmark from the task's name, the question id from the task's row (each benchmark's field), the
video by file name; and the refusals of files that cannot be used. No lmms-eval needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfs.pipeline.evaluation.lmms_plugin.selections import (QUESTION_ID_FIELDS, SelectionIndex, SelectionsError, benchmark_of_task,
                                         video_key)


def line(benchmark, question_id, video_path, timestamps=(1.0, 2.0), **more) -> dict:
    return {"sample_id": str(question_id), "video_id": "v", "benchmark": benchmark, "view": "parquet",
            "question_id": question_id, "video_path": video_path, "n_frames": 8, "duration_s": 10.0,
            "selector": "hfs", "k": len(timestamps), "indices": list(range(len(timestamps))),
            "timestamps_s": list(timestamps), "scores": None, **more}


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def index(tmp_path) -> SelectionIndex:
    return SelectionIndex.read(write(tmp_path / "sel.jsonl", [
        line("videomme", "001-1", "data/abc.mp4", (3.0, 4.0)),
        line("videomme", "001-2", "data/abc.mp4", (5.0, 6.0)),
        line("longvideobench", "86CxyhFV9MI_0", "videos/86CxyhFV9MI.mp4"),
        line("nextqa", 4, "NExTVideo/1164/4010069381.mp4", (7.5,)),
        line("nextqa", 4, "NExTVideo/0000/2440175990.mp4", (8.5,)),
        line("mlvu", None, "video/1_plotQA/movie101_66.mp4", (9.0,)),
        line("mlvu", None, "video/2_needle/needle_32.mp4", (1.0,)),
        line("mlvu", None, "video/2_needle/needle_32.mp4", (2.0,)),
    ]))


@pytest.mark.parametrize("task, benchmark", [
    ("videomme", "videomme"), ("videomme_w_subtitle", "videomme"), ("longvideobench_val_v", "longvideobench"),
    ("mlvu_dev", "mlvu"), ("nextqa_mc_test", "nextqa"), ("mvbench", None), ("nextqaX", None)])
def test_benchmark_of_task(task, benchmark):
    assert benchmark_of_task(task) == benchmark


def test_video_key_is_the_file_name_without_extension():
    assert video_key("/root/.cache/huggingface/videomme/data/abc.MP4") == "abc"
    assert video_key("data\\abc.mkv") == "abc"


def test_lookup_by_task_question_id_and_video(index):
    """Each benchmark's row field names the question; the video is matched by file name under
    whatever folder lmms-eval keeps it (Video-MME's .MP4/.mkv variants included)."""
    found = index.lookup("videomme", {"question_id": "001-2", "videoID": "abc"}, "/c/videomme/data/abc.MP4")
    assert found.timestamps_s == (5.0, 6.0)
    assert index.lookup("videomme_w_subtitle", {"question_id": "001-1"}, "/c/data/abc.mkv").timestamps_s == (3.0, 4.0)
    assert index.lookup("longvideobench_val_v", {"id": "86CxyhFV9MI_0"}, "/c/videos/86CxyhFV9MI.mp4") is not None
    # NExT-QA's qid is per video: the video tells the two questions 4 apart (an int in the parquet)
    assert index.lookup("nextqa_mc_test", {"qid": 4, "video": "4010069381"}, "/n/4010069381.mp4").timestamps_s == (7.5,)
    assert index.lookup("nextqa_mc_test", {"qid": "4"}, "/n/2440175990.mp4").timestamps_s == (8.5,)


def test_lookup_misses(index):
    assert index.lookup("videomme", {"question_id": "001-3"}, "data/abc.mp4") is None  # not selected
    assert index.lookup("videomme", {"question_id": "001-1"}, "data/other.mp4") is None  # another video
    assert index.lookup("longvideobench_val_v", {"question_id": "001-1"}, "data/abc.mp4") is None  # another benchmark
    assert index.lookup("mvbench", {"question_id": "001-1"}, "data/abc.mp4") is None  # a task hfs does not select for
    assert index.lookup("videomme", {}, "data/abc.mp4") is None  # a row without the id field


def test_lines_without_question_id_match_by_video_when_alone(index):
    """MLVU's JSON release has no question id: its line names the question only when no other line
    without an id has its video."""
    assert index.lookup("mlvu_dev", {"question_id": "whatever"}, "/m/movie101_66.mp4").timestamps_s == (9.0,)
    assert index.lookup("mlvu_dev", {}, "/m/needle_32.mp4") is None
    assert index.ambiguous == 2
    assert len(index) == 6


def test_refusals_name_the_file_and_line(tmp_path):
    with pytest.raises(SelectionsError, match=r"missing\.jsonl not found; write it with `hfs select"):
        SelectionIndex.read(tmp_path / "missing.jsonl")
    with pytest.raises(SelectionsError, match=r"empty\.jsonl holds no selections"):
        SelectionIndex.read(write(tmp_path / "empty.jsonl", []))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(line("videomme", "1", "a.mp4")) + "\n{not json\n")
    with pytest.raises(SelectionsError, match=r"bad\.jsonl, line 2: not a selection"):
        SelectionIndex.read(bad)
    with pytest.raises(SelectionsError, match=r"manifest\.jsonl, line 1: .*--bench NAME --data DIR"):
        SelectionIndex.read(write(tmp_path / "manifest.jsonl", [line(None, "1", "a.mp4")]))
    with pytest.raises(SelectionsError, match=r"old\.jsonl, line 1: .*timestamps_s"):
        old = line("videomme", "1", "a.mp4")
        del old["timestamps_s"]
        SelectionIndex.read(write(tmp_path / "old.jsonl", [old]))
    with pytest.raises(SelectionsError, match=r"twice\.jsonl: two lines for videomme question 1 of a\.mp4"):
        SelectionIndex.read(write(tmp_path / "twice.jsonl", [line("videomme", "1", "a.mp4", (1.0,)),
                                                              line("videomme", "1", "a.mp4", (2.0,))]))


# lmms-eval's task for each benchmark, and the video path its doc_to_visual builds from the row
# (lmms_eval/tasks/*/utils.py, 0.7.3), under some folder of its own
LMMS_TASKS = {
    "videomme": ("videomme", lambda row: f"/hf/videomme/data/{row['videoID']}.mp4"),
    "nextqa": ("nextqa_mc_test", lambda row: f"/hf/nextqa/NExTVideo/{row['video']}.mp4"),
    "longvideobench": ("longvideobench_val_v", lambda row: f"/hf/longvideobench/videos/{row['video_path']}"),
    "mlvu": ("mlvu_dev", lambda row: f"/hf/mlvu/dev/{row['video_name']}"),
}


@pytest.mark.parametrize("bench", list(LMMS_TASKS))
def test_hfs_select_lines_found_from_lmms_eval_rows(bench, tmp_path):
    """The contract with `hfs select`: for each benchmark's parquet (the rows lmms-eval's task
    reads as its docs), the lines written as `hfs select` writes them (the reader's question id
    and video key) are found from the rows, each row its own question's line."""
    import pyarrow.parquet as pq
    from benchmark_layouts import write_layout

    from hfs.manifests.benchmarks import get_benchmark
    from hfs.pipeline.demo.videos import solid, write_scene_video

    videos = [tmp_path / f"src{i}.mp4" for i in range(2)]
    for i, video in enumerate(videos):
        write_scene_video(video, [(4, solid((40 * i, 80, 120)))], fps=4, size=(32, 32))
    root = tmp_path / bench
    write_layout(bench, "parquet", root, videos)
    benchmark = get_benchmark(bench)
    read = benchmark.read(root)
    keys = {v.video_id: v.key for v in read.videos}
    index = SelectionIndex.read(write(tmp_path / "sel.jsonl", [
        line(bench, benchmark.question_id(s), keys[s.video_id], (float(i),)) for i, s in enumerate(read.samples)]))

    task, video_of = LMMS_TASKS[bench]
    (parquet,) = root.rglob("*.parquet")
    rows = pq.read_table(parquet).to_pylist()
    hits = [(row, f) for row in rows if (f := index.lookup(task, row, video_of(row))) is not None]
    assert len(read.samples) == 3 and len(hits) == 3  # the malformed row and the missing video have no line
    assert sorted(f.timestamps_s for _, f in hits) == [(0.0,), (1.0,), (2.0,)]  # each its own line
    for row, f in hits:
        assert f.question_id == str(row[QUESTION_ID_FIELDS[bench]])
        assert video_key(f.video_path) == video_key(video_of(row))
