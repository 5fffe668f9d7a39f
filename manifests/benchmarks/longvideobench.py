"""LongVideoBench (validation): reader of both published views, subtitles, breakdown by duration group and category.

Source: Hugging Face `longvideobench/LongVideoBench`
(https://huggingface.co/datasets/longvideobench/LongVideoBench; the card says
to `cat videos.tar.part.* > videos.tar` and untar it and `subtitles.tar`),
its loader github.com/longvideobench/LongVideoBench
`longvideobench/longvideobench_dataset.py`, and lmms-eval
`lmms_eval/tasks/longvideobench/{longvideobench_val_v.yaml,utils.py}`.

Views (the first found is read; `view=` forces one):

- **json** — `lvb_val.json`, a JSON list; per question: `id`, `video_id`,
  `video_path` (relative to `videos/`), `subtitle_path` (relative to
  `subtitles/`), `question`, `candidates` (4 or 5 option texts),
  `correct_choice` (0-based index), `duration` (seconds), `duration_group`
  (int: 15, 60, 600 or 3600, the upper bound in seconds of the group),
  `question_category` (e.g. "S2E", "T3O"), `topic_category`, `level`,
  `starting_timestamp_for_subtitles` (seconds), `view_count`.
- **parquet** — `validation-00000-of-00001.parquet` (also under `data/`, as
  `longvideobench/LongVideoBench-Meta` publishes it): the same fields with
  the options in `option0`...`option4`, padded with "N/A" when there are
  four (lmms-eval `longvideobench_doc_to_text` drops the "N/A" ones).

Subtitle files are JSON lists in one of two cue forms (`subtitles.parse_lvb_cues`);
their times are on the source video's timeline, and
`starting_timestamp_for_subtitles` moves them onto the clip's.

Breakdown (lmms-eval `longvideobench_aggregate_results`): per
`duration_group`, per `question_category`, and overall (lmms-eval's
"Overall" is the question-weighted mean of the groups, i.e. plain accuracy),
in two settings — `without_subtitles` (lmms-eval's `longvideobench_val_v`)
and `with_subtitles` (`longvideobench_val_i`, subtitles interleaved) — told
apart by the prediction record's `subtitles` flag (absent = without), as
Video-MME's are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from hfs.manifests.benchmarks import register_benchmark
from hfs.manifests.benchmarks.base import (
    SUBTITLE_LABELS,
    Benchmark,
    BenchmarkData,
    Outcome,
    RowError,
    Skip,
    accuracy_cell,
    by_subtitle_setting,
    cells_by,
    choice_index,
    float_field,
    int_field,
    json_list_rows,
    options_field,
    parquet_rows,
    text_field,
)
from hfs.manifests.records import QASample

logger = logging.getLogger(__name__)

DURATION_GROUPS = ("15", "60", "600", "3600")  # seconds: (8, 15], (15, 60], (180, 600], (900, 3600]
PADDING = "N/A"
OPTION_COLUMNS = tuple(f"option{i}" for i in range(5))
COMMON = ("id", "video_path", "question", "correct_choice", "duration_group", "question_category")
REQUIRED = {"json": (*COMMON, "candidates"), "parquet": (*COMMON, *OPTION_COLUMNS)}


def unpad_options(row: Mapping) -> tuple[str, ...]:
    """option0..option4 without the trailing "N/A" padding; RowError if padding comes before an option."""
    values = [row.get(c) for c in OPTION_COLUMNS]
    while values and (values[-1] is None or (isinstance(values[-1], str) and values[-1].strip() == PADDING)):
        values.pop()
    if any(v is None or (isinstance(v, str) and v.strip() == PADDING) for v in values):
        raise RowError(f"option padding {PADDING!r} before a real option")
    return options_field(values, "options")


def _breakdown(outcomes: Sequence[Outcome], skips: Sequence[Skip]) -> dict:
    """One subtitle setting's cells: overall, by_duration_group ("15", "60", "600", "3600"), by_question_category."""
    return {
        "overall": accuracy_cell(outcomes, skips),
        "by_duration_group": cells_by(outcomes, skips, lambda m: m.get("duration_group"), order=DURATION_GROUPS),
        "by_question_category": cells_by(outcomes, skips, lambda m: m.get("question_category")),
    }


@register_benchmark("longvideobench")
class LongVideoBench(Benchmark):
    """LongVideoBench validation set; see the module docstring for the layout."""

    title = "LongVideoBench"
    headline_label = "overall (w/o subs)"
    views = {"json": ("lvb_val.json",), "parquet": ("validation-*.parquet", "data/validation-*.parquet")}

    def read(self, data_dir, *, video_dir=None, view=None) -> BenchmarkData:
        """Validation questions and their videos `videos/{video_path}`.

        meta: `duration_group` (int, seconds), `question_category`,
        `topic_category`, `level`, `duration_s` (clip length, seconds),
        `lvb_video_id`, `subtitle_path` (absolute path under `subtitles/`,
        None when not given or absent), `subtitle_offset_s`
        (`starting_timestamp_for_subtitles`, seconds).
        """
        data_dir = os.path.abspath(os.fspath(data_dir))
        view, files = self.find_view(data_dir, view)
        video_root = (os.path.abspath(os.fspath(video_dir)) if video_dir is not None
                      else os.path.join(data_dir, "videos"))
        subtitle_root = os.path.join(data_dir, "subtitles")
        required = REQUIRED[view]

        def rows(file):
            if view == "parquet":
                return parquet_rows(file, required)
            return json_list_rows(file)

        def parse(file: str, number: int, row: Mapping) -> tuple[QASample, list[str]]:
            missing = [k for k in required if k not in row]
            if missing:
                raise RowError(f"missing {', '.join(repr(k) for k in missing)}")
            options = options_field(row["candidates"], "candidates") if view == "json" else unpad_options(row)
            index = choice_index(row.get("correct_choice"), len(options), "correct_choice")
            subtitle = row.get("subtitle_path")
            subtitle = os.path.join(subtitle_root, subtitle) if isinstance(subtitle, str) and subtitle.strip() else None
            meta = {
                "duration_group": int_field(row, "duration_group"),
                "question_category": text_field(row, "question_category"),
                "topic_category": row.get("topic_category"),
                "level": row.get("level"),
                "duration_s": float_field(row, "duration"),
                "lvb_video_id": row.get("video_id"),
                "subtitle_path": subtitle if subtitle and os.path.isfile(subtitle) else None,
                "subtitle_offset_s": float_field(row, "starting_timestamp_for_subtitles", 0.0),
                "answer_raw": row.get("correct_choice"),
            }
            sample = QASample(text_field(row, "id"), "", text_field(row, "question"), options, options[index], index,
                              f"{file}:{number}", meta)
            return sample, [os.path.join(video_root, text_field(row, "video_path"))]

        return self.read_rows(data_dir, view, files, rows, parse, video_root)

    def aggregate(self, outcomes: Sequence[Outcome], skips: Sequence[Skip]) -> dict:
        """Per setting present (`without_subtitles`, `with_subtitles`): overall, by_duration_group,
        by_question_category. A skip without a `subtitles` flag counts in every setting."""
        return by_subtitle_setting(outcomes, skips, _breakdown)

    def table_metrics(self, aggregate: Mapping) -> list[tuple[str, Mapping]]:
        """Duration groups, question categories, overall; without subtitles, then with."""
        rows = []
        for setting, label in SUBTITLE_LABELS.items():
            if setting in aggregate:
                part = aggregate[setting]
                rows += [(f"≤{g} s ({label})", cell) for g, cell in part["by_duration_group"].items()]
                rows += [(f"category {c} ({label})", cell) for c, cell in part["by_question_category"].items()]
                rows.append((f"overall ({label})", part["overall"]))
        return rows

    def headline(self, aggregate: Mapping) -> Mapping:
        """Overall accuracy without subtitles."""
        return aggregate["without_subtitles"]["overall"]
