"""Video-MME: reader, subtitles, and the short/medium/long/overall breakdown without and with subtitles.

Published view — Hugging Face `lmms-lab/Video-MME`, config `videomme`, split
`test` (https://huggingface.co/datasets/lmms-lab/Video-MME, file
`videomme/test-00000-of-00001.parquet`, 2,700 rows; dataset card features;
lmms-eval's `videomme.yaml` now says `lmms-eval/Video-MME`, the same files).
Columns: `video_id` (the video's number, "001"), `duration` ("short",
"medium", "long"), `domain`, `sub_category`, `url`, `videoID` (the YouTube
id, which names the files), `question_id` ("001-1"), `task_type`,
`question`, `options` (four strings "A. text"), `answer` (a letter).
Videos ship as `videos_chunked_*.zip` and unpack to `data/{videoID}.mp4`
(some `.MP4` or `.mkv`); subtitles ship as `subtitle.zip` and unpack to
`subtitle/{videoID}.srt` (not every video has one). Both paths and the
extension fallback are lmms-eval's (`lmms_eval/tasks/videomme/utils.py`:
`videomme_doc_to_visual`, `videomme_doc_to_text_subtitle`).

Subtitles are SRT with each cue's text in `<font color="white"
size=".72c">...</font>`, cues overlapping (`subtitles.parse_srt`). lmms-eval's
"with subtitles" prompt keeps the cues that cover a sampled frame; here the
sampled frames are the selector's, and `BenchmarkData.subtitle_lines(sample,
timestamps_s)` returns those lines (window rule in `subtitles`). Under `hfs evaluate
--protocol lmms-eval` the lines are lmms-eval's own, at its 32 evenly spaced frames whatever the
selector chose (`subtitles.sample_lmms_eval_subtitle_lines`).

Breakdown (lmms-eval `videomme_aggregate_results`, the paper's Table 1):
accuracy per duration (short, medium, long) and overall, in two settings —
`without_subtitles` and `with_subtitles` — told apart by the prediction
record's `subtitles` flag (absent = without). Per task type and domain too.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence

from hfs.manifests.answers import option_letter
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
    letter_index,
    options_field,
    parquet_rows,
    text_field,
)
from hfs.manifests.records import QASample

logger = logging.getLogger(__name__)

DURATIONS = ("short", "medium", "long")
REQUIRED = ("videoID", "video_id", "duration", "domain", "sub_category", "question_id", "task_type", "question",
            "options", "answer")
EXTENSIONS = (".mp4", ".MP4", ".mkv")  # lmms-eval's order
_LETTERED = re.compile(r"^\s*\(?([A-Z])\)?[.):]\s*(.*?)\s*$", re.DOTALL)


def split_lettered(options: Sequence[str]) -> tuple[str, ...]:
    """Texts of options written "A. text", "B. text"... (letters checked to run A, B, C in order)."""
    texts = []
    for i, option in enumerate(options):
        m = _LETTERED.match(option)
        if not m or m.group(1) != option_letter(i):
            raise RowError(f"option {i} must start with {option_letter(i)!r}, got {option[:40]!r}")
        if not m.group(2):
            raise RowError(f"option {option_letter(i)} is empty")
        texts.append(m.group(2))
    return tuple(texts)


def _breakdown(outcomes: Sequence[Outcome], skips: Sequence[Skip]) -> dict:
    """One subtitle setting's cells: overall, by_duration, by_task_type, by_domain, by_sub_category (the
    groups lmms-eval's ``videomme_aggregate_results`` logs)."""
    return {
        "overall": accuracy_cell(outcomes, skips),
        "by_duration": cells_by(outcomes, skips, lambda m: m.get("duration"), order=DURATIONS),
        "by_task_type": cells_by(outcomes, skips, lambda m: m.get("task_type")),
        "by_domain": cells_by(outcomes, skips, lambda m: m.get("domain")),
        "by_sub_category": cells_by(outcomes, skips, lambda m: m.get("sub_category")),
    }


@register_benchmark("videomme")
class VideoMME(Benchmark):
    """Video-MME; see the module docstring for the layout."""

    title = "Video-MME"
    headline_label = "overall (w/o subs)"
    views = {"parquet": ("videomme/test-*.parquet", "test-*.parquet")}

    def read(self, data_dir, *, video_dir=None, view=None) -> BenchmarkData:
        """Questions and their videos `data/{videoID}.{mp4,MP4,mkv}`.

        meta: `duration` ("short"/"medium"/"long"), `domain`, `sub_category`,
        `task_type`, `videoID` (YouTube id), `video_number` (the `video_id`
        column, "001"), `url`, `subtitle_path` (absolute path of
        `subtitle/{videoID}.srt`, None when the file is absent),
        `subtitle_offset_s` (0.0: the SRT is on the video's own timeline),
        `answer_raw` (the published letter).
        """
        data_dir = os.path.abspath(os.fspath(data_dir))
        view, files = self.find_view(data_dir, view)
        video_root = os.path.abspath(os.fspath(video_dir)) if video_dir is not None else os.path.join(data_dir, "data")
        subtitle_root = os.path.join(data_dir, "subtitle")
        no_subtitles = set()

        def parse(file: str, number: int, row: Mapping) -> tuple[QASample, list[str]]:
            video = text_field(row, "videoID")
            duration = text_field(row, "duration").lower()
            if duration not in DURATIONS:
                raise RowError(f"'duration' must be one of {', '.join(DURATIONS)}, got {duration!r}")
            options = split_lettered(options_field(row.get("options"), "options"))
            index = letter_index(row.get("answer"), len(options))
            subtitle = os.path.join(subtitle_root, f"{video}.srt")
            if not os.path.isfile(subtitle):
                no_subtitles.add(video)
                subtitle = None
            meta = {
                "duration": duration,
                "domain": text_field(row, "domain"),
                "sub_category": text_field(row, "sub_category"),
                "task_type": text_field(row, "task_type"),
                "videoID": video,
                "video_number": text_field(row, "video_id"),
                "url": row.get("url"),
                "subtitle_path": subtitle,
                "subtitle_offset_s": 0.0,
                "answer_raw": row.get("answer"),
            }
            sample = QASample(text_field(row, "question_id"), "", text_field(row, "question"), options,
                              options[index], index, f"{file}:{number}", meta)
            return sample, [os.path.join(video_root, video + ext) for ext in EXTENSIONS]

        data = self.read_rows(data_dir, view, files, lambda f: parquet_rows(f, REQUIRED), parse, video_root)
        if no_subtitles:
            # Not an error: Video-MME has no subtitles for some videos; lmms-eval then says so in the prompt.
            logger.info("Video-MME: %d videos have no subtitle file under %s", len(no_subtitles), subtitle_root)
        return data

    def aggregate(self, outcomes: Sequence[Outcome], skips: Sequence[Skip]) -> dict:
        """Per setting present: overall, by_duration (short/medium/long), by_task_type, by_domain, by_sub_category.

        A skip without a `subtitles` flag (e.g. a missing video) counts in
        every setting; "without_subtitles" is always reported.
        """
        return by_subtitle_setting(outcomes, skips, _breakdown)

    def table_metrics(self, aggregate: Mapping) -> list[tuple[str, Mapping]]:
        """Short, medium, long, overall; without subtitles, then with."""
        rows = []
        for setting, label in SUBTITLE_LABELS.items():
            if setting in aggregate:
                part = aggregate[setting]
                rows += [(f"{d} ({label})", part["by_duration"][d]) for d in DURATIONS if d in part["by_duration"]]
                rows.append((f"overall ({label})", part["overall"]))
        return rows

    def headline(self, aggregate: Mapping) -> Mapping:
        """Overall accuracy without subtitles."""
        return aggregate["without_subtitles"]["overall"]
