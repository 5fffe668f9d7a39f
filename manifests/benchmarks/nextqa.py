"""NExT-QA multiple choice (test split, or the val split): reader and breakdown by question type and group.

Published views (the first found is read):

- **parquet** — Hugging Face `lmms-lab/NExTQA`, config `MC`, split `test`
  (https://huggingface.co/datasets/lmms-lab/NExTQA, file `MC/test-00000-of-00001.parquet`,
  8,564 rows; lmms-eval's task now names the repository `lmms-eval/NExTQA`
  after its "migrate dataset paths to new orgs" change). Columns: `video` (int64, the video's number), `frame_count`,
  `width`, `height`, `question`, `answer` (int, 0-based index of the right
  option), `qid` (int, question number within the video), `type` (question
  type code), `a0`...`a4` (the five options). Videos ship as `videos.zip`,
  which unpacks to `NExTVideo/{video}.mp4`; lmms-eval
  (`lmms_eval/tasks/nextqa/nextqa_mc_test.yaml`, `utils.py`:
  `get_video(cache_dir, doc["video"])` with `cache_dir = .../NExTVideo`) looks
  there and scores `exact_match` against `OPTIONS[doc["answer"]]`.
- **csv** — the original annotations, github.com/doc-doc/NExT-QA
  `dataset/nextqa/test.csv`, same columns. The original NExTVideo download
  nests videos as `{folder}/{video}.mp4`; `map_vid_vidorID.json` (same repo,
  video -> "folder/video") is used when present in the data folder.
- **csv-val** — the validation split, same repository, `dataset/nextqa/val.csv`
  (4,996 questions; the columns and videos of `test.csv`; `eval_mc.py`'s
  default `mode='val'`). lmms-eval's NExT-QA MC task has no val split, and the
  `lmms-lab/NExTQA` MC config ships none, so this is the only val view. Read
  when the data folder has no test file, or with `view="csv-val"` (the
  original `dataset/nextqa/` folder holds both; test is read first).

Videos are looked for in `video_dir`, else `NExTVideo/`, else `videos/`, else
the data folder itself. The question id is `{video}_{qid}`, the id the
official `eval_mc.py` uses.

Breakdown (`eval_mc.py` of doc-doc/NExT-QA): overall; per question type as
published — CW (why), CH (how), TN (before/after), TC (when), TP (the test
set's "previous" temporal questions), DC (count), DL (location), DO (other);
per group — causal (C*), temporal (T*), descriptive (D*). `eval_mc.py` folds TP
into TN ("Bef&Aft"); `by_official_type` reproduces those seven columns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from hfs.manifests.benchmarks import register_benchmark
from hfs.manifests.benchmarks.base import (
    Benchmark,
    BenchmarkData,
    Outcome,
    RowError,
    Skip,
    accuracy_cell,
    cells_by,
    choice_index,
    csv_rows,
    int_field,
    load_json_file,
    parquet_rows,
    text_field,
)
from hfs.manifests.records import QASample

logger = logging.getLogger(__name__)

TYPES = ("CW", "CH", "TN", "TC", "TP", "DC", "DL", "DO")
OFFICIAL_TYPES = ("CW", "CH", "TN", "TC", "DC", "DL", "DO")  # eval_mc.py's columns: TP counted as TN
OFFICIAL_NAMES = {"CW": "Why", "CH": "How", "TN": "Bef&Aft", "TC": "When", "DC": "Cnt", "DL": "Loc", "DO": "Other"}
GROUPS = {"C": "causal", "T": "temporal", "D": "descriptive"}
OPTION_COLUMNS = ("a0", "a1", "a2", "a3", "a4")
REQUIRED = ("video", "question", "answer", "qid", "type", *OPTION_COLUMNS)
VIDEO_FOLDERS = ("NExTVideo", "videos")  # tried in order when no video_dir is given
VIDOR_MAP = "map_vid_vidorID.json"
SPLIT_OF_VIEW = {"parquet": "test", "csv": "test", "csv-val": "val"}


def question_group(qtype: str | None) -> str | None:
    """The group of a question type: "causal" (C*), "temporal" (T*), "descriptive" (D*), else None."""
    return GROUPS.get(qtype[:1]) if qtype else None


@register_benchmark("nextqa")
class NExTQA(Benchmark):
    """NExT-QA multiple choice; see the module docstring for the layout."""

    title = "NExT-QA"
    views = {"parquet": ("MC/test-*.parquet", "test-*.parquet"), "csv": ("test.csv",), "csv-val": ("val.csv",)}

    def question_id(self, sample: QASample) -> int:
        """NExT-QA's files have no question id column: a question is its video's `qid` (the
        video is the exported `video_path`)."""
        return sample.meta["qid"]

    def read(self, data_dir, *, video_dir=None, view=None) -> BenchmarkData:
        """Questions of the test split (the val split from `val.csv`) and their videos `{video}.mp4`.

        meta: `type` (question type code, e.g. "CW"), `group` ("causal",
        "temporal", "descriptive"), `qid` (int), `video` (the NExT-QA video
        number, as text), `answer_raw` (the published answer index), `split`
        ("test" or "val").
        """
        data_dir = os.path.abspath(os.fspath(data_dir))
        view, files = self.find_view(data_dir, view)
        split = SPLIT_OF_VIEW[view]
        if split == "test" and os.path.isfile(os.path.join(data_dir, "val.csv")):
            logger.info("NExT-QA: %s holds val.csv too; reading the test split (view %r; view 'csv-val' reads val)",
                        data_dir, view)
        video_root = self._video_root(data_dir, video_dir)
        vidor = self._vidor_map(data_dir)

        def rows(file):
            return parquet_rows(file, REQUIRED) if view == "parquet" else csv_rows(file, REQUIRED)

        def parse(file: str, number: int, row: Mapping) -> tuple[QASample, list[str]]:
            video = str(int_field(row, "video")) if not isinstance(row.get("video"), str) else text_field(row, "video")
            qid = int_field(row, "qid")
            qtype = text_field(row, "type").upper()
            if question_group(qtype) is None:
                raise RowError(f"unknown question type {qtype!r}; expected one of {', '.join(TYPES)}")
            options = tuple(text_field(row, c) for c in OPTION_COLUMNS)
            index = choice_index(row.get("answer"), len(options))
            meta = {"type": qtype, "group": question_group(qtype), "qid": qid, "video": video,
                    "answer_raw": row.get("answer"), "split": split}
            sample = QASample(f"{video}_{qid}", "", text_field(row, "question"), options, options[index], index,
                              f"{file}:{number}", meta)
            candidates = [os.path.join(video_root, f"{video}.mp4")]
            if video in vidor:
                candidates.append(os.path.join(video_root, f"{vidor[video]}.mp4"))
            return sample, candidates

        return self.read_rows(data_dir, view, files, rows, parse, video_root)

    @staticmethod
    def _video_root(data_dir: str, video_dir) -> str:
        """`video_dir`, else the first of NExTVideo/, videos/ in the data folder, else the data folder."""
        if video_dir is not None:
            return os.path.abspath(os.fspath(video_dir))
        for name in VIDEO_FOLDERS:
            if os.path.isdir(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        return data_dir

    @staticmethod
    def _vidor_map(data_dir: str) -> dict[str, str]:
        """video number -> "folder/video" of the original NExTVideo download, if the map file is there."""
        path = os.path.join(data_dir, VIDOR_MAP)
        if not os.path.isfile(path):
            return {}
        mapping = load_json_file(path)
        return {str(k): str(v) for k, v in mapping.items()} if isinstance(mapping, dict) else {}

    def aggregate(self, outcomes: Sequence[Outcome], skips: Sequence[Skip]) -> dict:
        """overall, by_group (causal/temporal/descriptive), by_type (as published), by_official_type (TP in TN)."""
        def qtype(meta):
            return meta.get("type")

        return {
            "overall": accuracy_cell(outcomes, skips),
            "by_group": cells_by(outcomes, skips, lambda m: m.get("group") or question_group(qtype(m)),
                                 order=tuple(GROUPS.values())),
            "by_type": cells_by(outcomes, skips, qtype, order=TYPES),
            "by_official_type": cells_by(outcomes, skips, lambda m: "TN" if qtype(m) == "TP" else qtype(m),
                                         order=OFFICIAL_TYPES),
        }

    def table_metrics(self, aggregate: Mapping) -> list[tuple[str, Mapping]]:
        """`eval_mc.py`'s printed table, in its order: Why, How, Bef&Aft (TN with TP), When, Cnt, Loc,
        Other, then Acc_C, Acc_T, Acc_D (the groups), then Acc (overall); those scored."""
        rows = [(f"{OFFICIAL_NAMES[t]} ({'TN+TP' if t == 'TN' else t})", aggregate["by_official_type"][t])
                for t in OFFICIAL_TYPES if t in aggregate["by_official_type"]]
        rows += [(f"Acc_{code} ({group})", aggregate["by_group"][group])
                 for code, group in GROUPS.items() if group in aggregate["by_group"]]
        return rows + [("overall", aggregate["overall"])]
