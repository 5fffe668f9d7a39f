"""A question's frames from an `hfs select` file, for a harness that has its own copy of the question.

`hfs select` writes one JSON line per question in the README's export format (``benchmark``,
``view``, ``question_id``, ``video_path``, ``n_frames``, ``duration_s``, ``indices``,
``timestamps_s``, ...). A harness such as lmms-eval holds the same question as its task's
``doc`` (the benchmark's published row) and the video path it built; ``SelectionIndex.lookup``
finds the line from those: the benchmark (from the task's name), the question id (the row's
field that `hfs select` copied into ``question_id``) and the video (its file name without the
extension, since each harness keeps the videos under its own folder and Video-MME's may be
``.mp4``, ``.MP4`` or ``.mkv``). Pure Python: no harness is imported here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Optional

log = logging.getLogger(__name__)

QUESTION_ID_FIELDS = {
    "videomme": "question_id",  # Video-MME's parquet
    "longvideobench": "id",  # LongVideoBench's lvb_val.json
    "mlvu": "question_id",  # MLVU's parquet (its JSON release has no id: see lookup)
    "nextqa": "qid",  # NExT-QA's MC parquet; the id is per video, so the video names the question with it
}
"""Per benchmark, the field of lmms-eval's ``doc`` that `hfs select` writes as ``question_id``."""


class SelectionsError(ValueError):
    """A selections file that cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class Selection:
    """One question's frames: times in seconds on the source video's timeline."""

    benchmark: str
    question_id: Optional[str]
    video_path: str
    timestamps_s: tuple[float, ...]
    indices: tuple[int, ...]
    selector: Optional[str] = None


def benchmark_of_task(task: str) -> Optional[str]:
    """The benchmark an lmms-eval task reads (``videomme``, ``longvideobench_val_v``, ``mlvu_dev``,
    ``nextqa_mc_test`` ...), by the task name's prefix; None for a task of another benchmark."""
    for name in QUESTION_ID_FIELDS:
        if task == name or task.startswith(name + "_"):
            return name
    return None


def video_key(path: Any) -> str:
    """A video path's file name without its extension (``data/abc.mp4`` → ``abc``)."""
    return PurePath(str(path).replace("\\", "/")).stem


def _qid(value: Any) -> Optional[str]:
    return None if value is None else str(value)


class SelectionIndex:
    """The lines of one selections file, by (benchmark, question id, video)."""

    def __init__(self, selections: list[Selection], source: str = "<selections>"):
        self.source = source
        self.by_question: dict[tuple[str, str, str], Selection] = {}
        no_id: dict[tuple[str, str], list[Selection]] = {}
        for s in selections:
            if s.question_id is None:
                no_id.setdefault((s.benchmark, video_key(s.video_path)), []).append(s)
                continue
            key = (s.benchmark, s.question_id, video_key(s.video_path))
            earlier = self.by_question.get(key)
            if earlier is not None and earlier.timestamps_s != s.timestamps_s:
                raise SelectionsError(f"{source}: two lines for {s.benchmark} question {s.question_id} of "
                                      f"{s.video_path} with different frames; give one `hfs select` output per run")
            self.by_question[key] = s
        # Lines without a question id (MLVU's JSON release) name their question only when their
        # video has no other such line.
        self.by_video = {key: lines[0] for key, lines in no_id.items() if len(lines) == 1}
        self.ambiguous = sum(len(lines) for lines in no_id.values() if len(lines) > 1)
        if self.ambiguous:
            log.warning("%s: %d line(s) without a question id share their video with another; "
                        "those questions get no selection", source, self.ambiguous)

    def __len__(self) -> int:
        return len(self.by_question) + len(self.by_video)

    @classmethod
    def read(cls, path: str | Path) -> "SelectionIndex":
        """Read an `hfs select` JSONL file. Raises SelectionsError naming the file and line."""
        path = Path(path)
        if not path.is_file():
            raise SelectionsError(f"selections file {path} not found; write it with `hfs select --out {path}` "
                                  f"(see the README's export format)")
        selections = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                selections.append(parse_selection(record))
            except (ValueError, KeyError, TypeError) as err:
                raise SelectionsError(f"{path}, line {n}: not a selection in the export format ({err}); "
                                      f"write the file again with `hfs select`") from None
        if not selections:
            raise SelectionsError(f"{path} holds no selections; write it with `hfs select`")
        return cls(selections, source=str(path))

    def lookup(self, task: str, doc: Mapping, video: Any) -> Optional[Selection]:
        """The selection for lmms-eval's ``task`` question ``doc`` on ``video`` (the path the task
        gives the model), or None (another benchmark, or a question the file does not hold)."""
        benchmark = benchmark_of_task(task)
        if benchmark is None:
            return None
        key = video_key(video)
        qid = _qid(doc.get(QUESTION_ID_FIELDS[benchmark]))
        if qid is not None:
            found = self.by_question.get((benchmark, qid, key))
            if found is not None:
                return found
        return self.by_video.get((benchmark, key))


def parse_selection(record: Mapping) -> Selection:
    """One export-format line; raises KeyError/ValueError/TypeError when it is not one."""
    if record.get("benchmark") is None:
        raise ValueError("no benchmark (a selection from --manifest: select with --bench NAME --data DIR)")
    if record.get("video_path") is None:
        raise ValueError("no video_path")
    timestamps = tuple(float(t) for t in record["timestamps_s"])
    if not timestamps:
        raise ValueError("no timestamps_s")
    indices = tuple(int(i) for i in record.get("indices") or ())
    return Selection(benchmark=str(record["benchmark"]), question_id=_qid(record.get("question_id")),
                     video_path=str(record["video_path"]), timestamps_s=timestamps, indices=indices,
                     selector=record.get("selector"))
