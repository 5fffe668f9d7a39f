"""Benchmark folders in their exact published layouts, written by the tests (no binary fixtures in git).

Two levels:

- row and file writers (parquet with the published schema, JSON, SRT): what
  tests/manifests/test_benchmarks.py reads back with each reader;
- `write_layout(bench, view, root, videos)`: a small but complete benchmark
  folder for the end-to-end tests of `hfs evaluate` / `hfs select`: three
  answerable questions on real (generated) videos, one malformed row and one
  question whose video is missing, in every published view.

Importable as `benchmark_layouts` (tests/ is on sys.path, see tests/conftest.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from hfs.manifests.answers import option_letter


def touch(folder, name: str):
    """An empty placeholder file folder/name (folders created)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_text(folder, name: str, text: str):
    """Write text to folder/name (folders created) and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_parquet(folder, name: str, rows: list[dict], schema: pa.Schema):
    """Write rows as a parquet file with the published schema and return the path."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


# --------------------------------------------------------------------------- NExT-QA (lmms-lab/NExTQA, MC/test)

NEXTQA_SCHEMA = pa.schema([
    ("video", pa.int64()), ("frame_count", pa.int64()), ("width", pa.int64()), ("height", pa.int64()),
    ("question", pa.string()), ("answer", pa.int64()), ("qid", pa.int64()), ("type", pa.string()),
    ("a0", pa.string()), ("a1", pa.string()), ("a2", pa.string()), ("a3", pa.string()), ("a4", pa.string()),
])


def nextqa_row(video, qid, qtype, answer, question="what does the man do"):
    return {"video": video, "frame_count": 369, "width": 640, "height": 480, "question": question,
            "answer": answer, "qid": qid, "type": qtype,
            "a0": "roll the handle", "a1": "tap their feet", "a2": "strum", "a3": "hit with sticks", "a4": "pat"}


# --------------------------------------------------------------------------- Video-MME (lmms-lab/Video-MME)

VIDEOMME_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("duration", pa.string()), ("domain", pa.string()), ("sub_category", pa.string()),
    ("url", pa.string()), ("videoID", pa.string()), ("question_id", pa.string()), ("task_type", pa.string()),
    ("question", pa.string()), ("options", pa.list_(pa.string())), ("answer", pa.string()),
])

SRT = """1
00:00:01,240 --> 00:00:06,879
<font color="white" size=".72c">when we are about to do something</font>

2
00:00:04,160 --> 00:00:10,519
<font color="white" size=".72c">new</font>

3
00:00:20,000 --> 00:00:22,500
<font color="white" size=".72c">much later &amp; elsewhere</font>
"""


def videomme_row(number, duration, youtube, qnum, answer="A", options=None):
    return {"video_id": number, "duration": duration, "domain": "Knowledge", "sub_category": "Astronomy",
            "url": f"https://www.youtube.com/watch?v={youtube}", "videoID": youtube,
            "question_id": f"{number}-{qnum}", "task_type": "Counting Problem", "question": "How many planets?",
            "options": options or ["A. Seven.", "B. Eight.", "C. Nine.", "D. Ten."], "answer": answer}


# --------------------------------------------------------------------------- LongVideoBench (validation)


def lvb_record(qid, video, n_options=5, correct=1, **extra):
    record = {
        "video_id": video, "question": f"In the scene where ..., what happens? ({qid})",
        "question_wo_referring_query": "what happens?",
        "candidates": ["opt a", "opt b", "opt c", "opt d", "opt e"][:n_options], "correct_choice": correct,
        "position": [12], "topic_category": "NP-News-Programs", "question_category": "S2E", "level": "L1-Perception",
        "id": qid, "video_path": f"{video}.mp4", "subtitle_path": f"{video}_en.json", "duration_group": 600,
        "starting_timestamp_for_subtitles": 0, "duration": 512.3, "view_count": 1000,
    }
    return {**record, **extra}


LVB_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("id", pa.string()), ("video_path", pa.string()), ("subtitle_path", pa.string()),
    ("correct_choice", pa.int64()), ("question", pa.string()),
    *[(f"option{i}", pa.string()) for i in range(5)],
    ("duration", pa.float64()), ("duration_group", pa.int64()), ("question_category", pa.string()),
    ("topic_category", pa.string()), ("starting_timestamp_for_subtitles", pa.float64()),
])


def lvb_parquet_row(qid, video, options, correct=0, group=60):
    padded = list(options) + ["N/A"] * (5 - len(options))
    return {"video_id": video, "id": qid, "video_path": f"{video}.mp4", "subtitle_path": f"{video}_en.json",
            "correct_choice": correct, "question": "What is shown?", **{f"option{i}": o for i, o in enumerate(padded)},
            "duration": 40.0, "duration_group": group, "question_category": "E2O", "topic_category": "KC",
            "starting_timestamp_for_subtitles": 0.0}


# --------------------------------------------------------------------------- MLVU (dev)


def mlvu_record(video, answer="Yellow", candidates=("Yellow", "Red", "Green", "Blue"), qtype="plotQA"):
    return {"video": video, "duration": 246, "question": "What color is the main male character in the video?",
            "candidates": list(candidates), "answer": answer, "question_type": qtype}


MLVU_SCHEMA = pa.schema([
    ("video_name", pa.string()), ("duration", pa.float64()), ("question", pa.string()),
    ("candidates", pa.list_(pa.string())), ("answer", pa.string()), ("task_type", pa.string()),
    ("question_id", pa.string()),
])


def mlvu_parquet_row(name, task, answer, qid, question=None, candidates=("Yellow", "Red", "Green", "Blue")):
    inline = "\n".join(f"({option_letter(i)}) {c}" for i, c in enumerate(candidates))
    return {"video_name": name, "duration": 246.0, "question": question or f"What color is it?\n{inline}\n",
            "candidates": list(candidates), "answer": answer, "task_type": task, "question_id": qid}


# --------------------------------------------------------------------------- whole folders for end-to-end runs

LAYOUTS: tuple[tuple[str, str], ...] = (
    ("nextqa", "parquet"),
    ("videomme", "parquet"),
    ("longvideobench", "json"),
    ("longvideobench", "parquet"),
    ("mlvu", "json"),
    ("mlvu", "parquet"),
)
"""(benchmark, published view) of every layout `write_layout` writes."""

SHORT_SRT = """1
00:00:00,000 --> 00:00:01,500
<font color="white" size=".72c">a red screen</font>

2
00:00:01,500 --> 00:00:09,000
<font color="white" size=".72c">then a green circle</font>
"""
"""Cues covering the whole of a short generated video: every selected frame has a subtitle line."""


@dataclass(frozen=True)
class Layout:
    """A benchmark folder written by `write_layout` and what a reader should find in it.

    `answerable`: ids of the questions whose video is there, in file order;
    `bad` / `missing`: rows that cannot be read / questions whose video is absent;
    `videos`: relative paths of the video files written.
    """

    bench: str
    view: str
    root: Path
    answerable: tuple[str, ...]
    videos: tuple[str, ...]
    bad: int = 1
    missing: int = 1
    subtitled: tuple[str, ...] = field(default=())  # questions whose video has a subtitle file


def write_layout(bench: str, view: str, root: Path, videos: Sequence[Path]) -> Layout:
    """A `bench` folder in its published `view` under `root`: three answerable questions on
    copies of `videos` (two or more video files: the first two are used, and a third file
    where the layout needs three videos), one malformed row and one question whose video
    file is missing."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    writer = _WRITERS.get((bench, view))
    if writer is None:
        raise ValueError(f"no layout for {bench} ({view}); known: {LAYOUTS}")
    layout = writer(root)
    for i, rel in enumerate(layout.videos):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(videos[i % len(videos)], target)
    return layout


def _nextqa_parquet(root: Path) -> Layout:
    write_parquet(root, "MC/test-00000-of-00001.parquet", [
        nextqa_row(101, 0, "CW", 1, question="why is the screen red"),
        nextqa_row(101, 1, "TN", 2, question="what comes after the red screen"),
        nextqa_row(102, 0, "DC", 0, question="how many circles are there"),
        nextqa_row(102, 1, "TP", 7),  # malformed: answer index out of range
        nextqa_row(103, 0, "DL", 1),  # its video is missing
    ], NEXTQA_SCHEMA)
    return Layout("nextqa", "parquet", root, ("101_0", "101_1", "102_0"), ("NExTVideo/101.mp4", "NExTVideo/102.mp4"))


def _videomme_parquet(root: Path) -> Layout:
    write_parquet(root, "videomme/test-00000-of-00001.parquet", [
        videomme_row("001", "short", "shortVid001", 1, "B"),
        videomme_row("001", "short", "shortVid001", 2, "D"),
        videomme_row("601", "long", "longVid0601", 1, "C"),
        videomme_row("303", "medium", "mediumVid03", 1, answer="E"),  # malformed: no option E
        videomme_row("301", "medium", "absentVideo", 1),  # its video is missing
    ], VIDEOMME_SCHEMA)
    write_text(root, "subtitle/shortVid001.srt", SHORT_SRT)
    return Layout("videomme", "parquet", root, ("001-1", "001-2", "601-1"),
                  ("data/shortVid001.mp4", "data/longVid0601.mp4", "data/mediumVid03.mp4"),
                  subtitled=("001-1", "001-2"))


def _lvb_subtitles(root: Path) -> None:
    write_text(root, "subtitles/lvbVidA_en.json", json.dumps([
        {"timestamp": [0.0, 1.5], "text": "a red screen"}, {"timestamp": [1.5, None], "text": "then a circle"}]))


def _lvb_json(root: Path) -> Layout:
    write_text(root, "lvb_val.json", json.dumps([
        lvb_record("lvbVidA_0", "lvbVidA", duration_group=15, duration=3.0),
        lvb_record("lvbVidA_1", "lvbVidA", n_options=4, correct=3, question_category="T3O", duration_group=15,
                   duration=3.0),
        lvb_record("lvbVidB_0", "lvbVidB", correct=0, duration_group=60, duration=2.0),
        lvb_record("lvbVidA_2", "lvbVidA", correct=9),  # malformed: no option 9
        lvb_record("gone_0", "noSuchVideo", duration_group=3600),  # its video is missing
    ], indent=2))
    _lvb_subtitles(root)
    return Layout("longvideobench", "json", root, ("lvbVidA_0", "lvbVidA_1", "lvbVidB_0"),
                  ("videos/lvbVidA.mp4", "videos/lvbVidB.mp4"), subtitled=("lvbVidA_0", "lvbVidA_1"))


def _lvb_parquet(root: Path) -> Layout:
    write_parquet(root, "validation-00000-of-00001.parquet", [
        lvb_parquet_row("lvbVidA_0", "lvbVidA", ["a", "b", "c", "d"], correct=3, group=15),
        lvb_parquet_row("lvbVidA_1", "lvbVidA", ["a", "b", "c", "d", "e"], correct=4, group=15),
        lvb_parquet_row("lvbVidB_0", "lvbVidB", ["a", "b", "c"], group=60),
        lvb_parquet_row("lvbVidA_2", "lvbVidA", ["a", "N/A", "c", "d"]),  # malformed: padding before an option
        lvb_parquet_row("gone_0", "noSuchVideo", ["a", "b"], group=3600),  # its video is missing
    ], LVB_SCHEMA)
    _lvb_subtitles(root)
    return Layout("longvideobench", "parquet", root, ("lvbVidA_0", "lvbVidA_1", "lvbVidB_0"),
                  ("videos/lvbVidA.mp4", "videos/lvbVidB.mp4"), subtitled=("lvbVidA_0", "lvbVidA_1"))


def _mlvu_json(root: Path) -> Layout:
    release = root / "MLVU"
    write_text(release, "json/1_plotQA.json", json.dumps([
        mlvu_record("movie_a.mp4"),
        {**mlvu_record("movie_a.mp4"), "candidates": None},  # malformed: no candidates (choice_bench.py fails on it)
        mlvu_record("movie_b.mp4", answer="Red"),
    ], indent=2))
    write_text(release, "json/2_needle.json", json.dumps([
        mlvu_record("needle_a.mp4", answer="2", candidates=("1", "2", "5", "4"), qtype="findNeedle"),
        mlvu_record("needle_gone.mp4", qtype="findNeedle"),  # its video is missing
    ], indent=2))
    return Layout("mlvu", "json", root, ("plotQA_0", "plotQA_2", "needle_0"),
                  ("MLVU/video/1_plotQA/movie_a.mp4", "MLVU/video/1_plotQA/movie_b.mp4",
                   "MLVU/video/2_needle/needle_a.mp4"))


def _mlvu_parquet(root: Path) -> Layout:
    write_parquet(root, "mlvu/test-00000-of-00001.parquet", [
        mlvu_parquet_row("movie_a.mp4", "plotQA", "A", "Q1113"),  # bare name: found under video/1_plotQA/
        mlvu_parquet_row("count/count_a.mp4", "count", "C", "Q2001"),  # {task}/{file}
        mlvu_parquet_row("movie_a.mp4", "plotQA", "B", "Q1114"),
        mlvu_parquet_row("movie_x.mp4", "plotQA", "B", "Q1115",
                         question="What color is it?\n(A) Yellow\n(B) Red\n(C) Cyan\n(D) Blue"),  # malformed
        mlvu_parquet_row("surveil_gone.mp4", "anomaly_reco", "B", "Q3001"),  # its video is missing
    ], MLVU_SCHEMA)
    return Layout("mlvu", "parquet", root, ("Q1113", "Q2001", "Q1114"),
                  ("video/1_plotQA/movie_a.mp4", "count/count_a.mp4"))


_WRITERS = {
    ("nextqa", "parquet"): _nextqa_parquet,
    ("videomme", "parquet"): _videomme_parquet,
    ("longvideobench", "json"): _lvb_json,
    ("longvideobench", "parquet"): _lvb_parquet,
    ("mlvu", "json"): _mlvu_json,
    ("mlvu", "parquet"): _mlvu_parquet,
}
