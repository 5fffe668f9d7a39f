"""What every benchmark reader shares: the result record, views, rows, video lookup, tallies.

A benchmark's published files are an input format. Each reader (one module
per benchmark, registered in `hfs.manifests.benchmarks`) finds which of the
benchmark's published *views* is present under the data folder, reads its
rows into `QASample`s, looks up each question's video file, and returns a
`BenchmarkData`. A row that cannot be read becomes a `BadRecord(file, row,
reason)`; a question whose video file is missing is kept aside in
`BenchmarkData.missing`, never silently dropped.

Each module also owns its scoring breakdown, as lmms-eval tasks do: the
evaluation loop turns each answered question into an `Outcome` (per-question
metric) and the module's `aggregate(outcomes, skips)` builds the breakdown the
benchmark's paper reports from the cells `accuracy_cell` / `cells_by` count.
`hfs.pipeline.evaluation.scoring` is the shared machinery around it (prediction records,
skips, selectors, tables). The tallies live here, not in `pipeline/`, because
`manifests/` may not import `pipeline/` (arrows point one way).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hfs.manifests.answers import letter_index as option_index
from hfs.manifests.answers import normalise_answer, option_letter
from hfs.manifests.benchmarks.subtitles import DEFAULT_WINDOW_S, sample_subtitle_lines
from hfs.manifests.records import BadRecord, QASample, VideoItem, make_video_id

logger = logging.getLogger(__name__)

MAX_LOGGED_BAD = 20  # bad rows logged one by one; the rest are counted
MISSING_VIDEO = "missing video"  # skip reason of a question whose video file is absent
BAD_ROW = "bad row"  # skip reason of a row that could not be read
SUBTITLE_SETTINGS = {False: "without_subtitles", True: "with_subtitles"}  # a record's `subtitles` flag -> key
SUBTITLE_LABELS = {"without_subtitles": "w/o subs", "with_subtitles": "w/ subs"}


class BenchmarkError(ValueError):
    """A benchmark folder or file that cannot be read at all (no view found, unreadable file, missing column)."""


class RowError(ValueError):
    """One row that cannot be read; the message is the reason, without file and row."""


# ---------------------------------------------------------------------------
# What a reader returns.


@dataclass(frozen=True)
class MissingVideo:
    """A question set aside because its video file is not on disk.

    `path` is the absolute path that was expected (the first candidate when a
    benchmark allows several extensions), `reason` the skip reason.
    """

    sample: QASample
    path: str
    reason: str = MISSING_VIDEO


@dataclass
class BenchmarkData:
    """Everything read from one benchmark folder.

    `view` names the published layout that was read (e.g. "json", "parquet"),
    `files` the annotation files read, `videos` the distinct video files that
    exist (each once), `samples` the questions whose video exists, `bad` the
    rows that could not be read, `missing` the questions whose video file is
    absent.
    """

    benchmark: str
    data_dir: str
    view: str
    files: list[str] = field(default_factory=list)
    videos: list[VideoItem] = field(default_factory=list)
    samples: list[QASample] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    missing: list[MissingVideo] = field(default_factory=list)

    def question_count(self) -> int:
        """N, the questions in the benchmark's files: those read (with or without their video)
        and the rows that could not be read."""
        return len(self.samples) + len(self.missing) + len(self.bad)

    def skip_counts(self) -> dict[str, int]:
        """Questions not evaluable, by reason: bad rows and missing videos."""
        counts = Counter({BAD_ROW: len(self.bad)} if self.bad else {})
        counts.update(m.reason for m in self.missing)
        return dict(counts)

    def skips(self) -> list[dict]:
        """Skip records for `hfs.pipeline.evaluation.scoring`: one per bad row and per missing video.

        A missing video's record carries its sample's meta (so it counts in its
        duration group, task...); a bad row's carries only where it was.
        """
        out = [{"sample_id": None, "reason": BAD_ROW, "source": str(b)} for b in self.bad]
        out += [{**m.sample.meta, "sample_id": m.sample.sample_id, "reason": m.reason} for m in self.missing]
        return out

    def subtitle_lines(self, sample: QASample, timestamps_s: Sequence[float],
                       window_s: float | None = None) -> list[str]:
        """Subtitle lines around the selected frames of `sample` (see `subtitles.sample_subtitle_lines`).

        `timestamps_s` are the selected frames' times (seconds on the clip's
        timeline); `window_s` is the half-width w of the window (default
        `subtitles.DEFAULT_WINDOW_S`).
        """
        return sample_subtitle_lines(sample, timestamps_s, DEFAULT_WINDOW_S if window_s is None else window_s)


class Benchmark:
    """Base class of a benchmark reader and its scoring breakdown.

    `name` is set by `register_benchmark`; `title` is the benchmark's name as
    its paper writes it; `views` maps each published view to the glob patterns
    (relative to the data folder) that identify it, in order of preference;
    `headline_label` names the metric `headline` returns, as `table_metrics` labels it.
    """

    name: str = ""
    title: str = ""
    headline_label: str = "overall"
    views: dict[str, tuple[str, ...]] = {}

    def read(self, data_dir: str | os.PathLike, *, video_dir: str | os.PathLike | None = None,
             view: str | None = None) -> BenchmarkData:
        """Read the benchmark's published files under `data_dir`.

        `video_dir` overrides where the video files are looked for; `view`
        forces one published view (otherwise the first one found is read).
        Raises `BenchmarkError` when no view is found or a file is unreadable.
        """
        raise NotImplementedError

    def aggregate(self, outcomes: Sequence["Outcome"], skips: Sequence["Skip"]) -> dict:
        """The benchmark's breakdown of the scored questions, JSON-able."""
        raise NotImplementedError

    def table_metrics(self, aggregate: Mapping) -> list[tuple[str, Mapping]]:
        """(row label, cell) pairs of `aggregate` to show in a comparison table, in order."""
        raise NotImplementedError

    def question_id(self, sample: QASample) -> Any:
        """The question's id as the benchmark's files write it (what `hfs select` exports for
        other harnesses): by default the sample id, which the readers take from the id column."""
        return sample.sample_id

    # Shared reading steps -------------------------------------------------

    def find_view(self, data_dir: str, view: str | None = None) -> tuple[str, list[str]]:
        """The first published view with files under `data_dir`, and its files (sorted).

        BenchmarkError naming every file pattern looked for when none is found.
        """
        if not os.path.isdir(data_dir):
            raise BenchmarkError(f"{data_dir}: not a folder; pass the folder holding the {self.title} files")
        if view is not None and view not in self.views:
            raise BenchmarkError(f"{self.title} has no view {view!r}; known views: {', '.join(self.views)}")
        for name in [view] if view is not None else list(self.views):
            for pattern in self.views[name]:
                files = sorted(glob.glob(os.path.join(glob.escape(data_dir), pattern)))
                if files:
                    return name, files
        looked = "; ".join(f"{name}: {', '.join(self.views[name])}" for name in ([view] if view else self.views))
        raise BenchmarkError(f"{data_dir}: no {self.title} annotation files found; looked for ({looked})")

    def read_rows(self, data_dir: str, view: str, files: list[str], rows: Callable[[str], Iterable[Row]],
                  parse: Callable[[str, int, Mapping], tuple[QASample, list[str]]], video_base: str) -> BenchmarkData:
        """Read every row of `files` into a BenchmarkData.

        `rows(file)` yields the file's rows; `parse(file, row_number, row)`
        returns the sample and the candidate paths of its video file (the
        first that exists is used; the first is reported when none does), or
        raises RowError. Video keys are relative to `data_dir` (to
        `video_base` for videos outside it).
        """
        builder = _DataBuilder(self.name, data_dir, view)
        for file in files:
            for number, row, error in rows(file):
                if error is None and not isinstance(row, Mapping):
                    error = f"row is a {type(row).__name__}, expected an object"
                if error is not None:
                    builder.bad(file, number, error)
                    continue
                try:
                    sample, candidates = parse(file, number, row)
                except RowError as exc:
                    builder.bad(file, number, str(exc))
                    continue
                found = first_existing(candidates)
                key = relative_key(found or candidates[0], data_dir, video_base)
                builder.add(file, number, sample, found, candidates[0], key)
        return builder.finish(files)

    def headline(self, aggregate: Mapping) -> Mapping:
        """The one cell a summary shows for this benchmark (default: `aggregate["overall"]`)."""
        return aggregate["overall"]

    def notes(self, aggregate: Mapping) -> list[str]:
        """What a reader of `aggregate` must know to compare it with published figures (default: none)."""
        return []


class _DataBuilder:
    """Collects samples, videos, bad rows and missing videos of one read, deduplicating videos."""

    def __init__(self, benchmark: str, data_dir: str, view: str):
        self.data = BenchmarkData(benchmark, data_dir, view)
        self.videos: dict[str, VideoItem] = {}
        self.sample_ids: set[str] = set()
        self.unlogged = 0

    def bad(self, file: str, row: int, reason: str) -> None:
        """Record an unreadable row (logged, rate-limited)."""
        bad = BadRecord(file, row, reason)
        self.data.bad.append(bad)
        if len(self.data.bad) <= MAX_LOGGED_BAD:
            logger.warning("skipped %s", bad)
        else:
            self.unlogged += 1

    def add(self, file: str, row: int, sample: QASample, video_path: str | None, expected_path: str,
            video_key: str) -> None:
        """Add a read sample and point it at its video.

        `video_path` is the video file found (None: not found at
        `expected_path`); `video_key` is the found (else expected) path
        relative to the data folder, from which the video id is made.
        """
        if sample.sample_id in self.sample_ids:
            return self.bad(file, row, f"duplicate question id {sample.sample_id!r}")
        self.sample_ids.add(sample.sample_id)
        video_id = make_video_id(video_key)
        sample = _with_video(sample, video_id)
        if video_path is None:
            self.data.missing.append(MissingVideo(sample, expected_path))
            return
        if video_id not in self.videos:
            self.videos[video_id] = VideoItem(video_id, video_path, video_key, source=f"{file}:{row}")
            self.data.videos.append(self.videos[video_id])
        self.data.samples.append(sample)

    def finish(self, files: list[str]) -> BenchmarkData:
        """Log the read's summary and return it."""
        self.data.files = files
        if self.unlogged:
            logger.warning("%d more bad rows skipped (not logged); see BenchmarkData.bad", self.unlogged)
        d = self.data
        logger.info("%s (%s view): %d questions on %d videos; %d bad rows; %d questions with a missing video",
                    d.benchmark, d.view, len(d.samples), len(d.videos), len(d.bad), len(d.missing))
        return d


def _with_video(sample: QASample, video_id: str) -> QASample:
    """`sample` pointing at `video_id`."""
    return QASample(sample.sample_id, video_id, sample.question, sample.options, sample.answer,
                    sample.answer_index, sample.source, sample.meta)


# ---------------------------------------------------------------------------
# Rows of the published files.


Row = tuple[int, Any, "str | None"]  # (1-based row or line, decoded row, error reason or None)


def parquet_rows(path: str, required: Sequence[str]) -> Iterator[Row]:
    """(1-based row number, row as a dict, None) of a parquet file, read with pyarrow.

    BenchmarkError when the file cannot be read or lacks a `required` column
    (a file-level problem: every row would be bad for the same reason).
    """
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise BenchmarkError(f"{path}: cannot read parquet file: {exc}") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise BenchmarkError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(table.column_names)}")
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row, None


def json_list_rows(path: str) -> Iterator[Row]:
    """(line the record starts on, decoded record, error or None) of a JSON list file.

    Uses the manifest reader's container parser, so a record's line is the
    line a user can jump to; a syntax error ends the list with one error item.
    """
    from hfs.manifests.reader import iter_records

    try:
        with open(path, encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkError(f"{path}: cannot read JSON file: {exc}") from None
    yield from iter_records(text)


def csv_rows(path: str, required: Sequence[str]) -> Iterator[Row]:
    """(line number, row, None) of a CSV file with a header line; BenchmarkError if a column is missing."""
    import csv

    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise BenchmarkError(f"{path}: cannot read CSV file: {exc}") from None
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            found = ", ".join(reader.fieldnames or [])
            raise BenchmarkError(f"{path}: missing column(s) {', '.join(missing)}; found {found}")
        for row in reader:
            yield reader.line_num, row, None


# ---------------------------------------------------------------------------
# Field helpers: each raises RowError with a reason.


def text_field(row: Mapping, key: str) -> str:
    """`row[key]` as a non-empty stripped string."""
    value = row.get(key)
    if value is None:
        raise RowError(f"missing {key!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(f"{key!r} must be text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise RowError(f"{key!r} is empty")
    return text


def int_field(row: Mapping, key: str) -> int:
    """`row[key]` as an integer (an integral number or a string of digits)."""
    value = row.get(key)
    if value is None:
        raise RowError(f"missing {key!r}")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError(f"{key!r} must be an integer, got {value!r}")
    return value


def float_field(row: Mapping, key: str, default: float | None = None) -> float | None:
    """`row[key]` as a finite float; `default` when absent."""
    value = row.get(key)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(f"{key!r} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise RowError(f"{key!r} must be a finite number, got {value!r}")
    return number


def options_field(values: Any, key: str) -> tuple[str, ...]:
    """A list of option texts, each a non-empty string, at least two."""
    if not isinstance(values, (list, tuple)):
        raise RowError(f"{key!r} must be a list, got {type(values).__name__}")
    options = []
    for i, text in enumerate(values):
        if not isinstance(text, str) or not text.strip():
            raise RowError(f"{key}[{i}] must be non-empty text, got {text!r}")
        options.append(text.strip())
    if len(options) < 2:
        raise RowError(f"{key!r} has {len(options)} option(s); a multiple-choice question needs at least 2")
    return tuple(options)


def letter_index(answer: Any, n_options: int, key: str = "answer") -> int:
    """Index of an answer given as an option letter ("B", "(B)", "B."); RowError otherwise."""
    text = str(answer).strip() if isinstance(answer, str) else ""
    m = re.fullmatch(r"\(?([A-Z])\)?\.?", text)
    if not m:
        raise RowError(f"{key!r} must be an option letter, got {answer!r}")
    index = option_index(m.group(1))
    if index >= n_options:
        raise RowError(f"{key!r} is {m.group(1)} but there are only {n_options} options")
    return index


def choice_index(answer: Any, n_options: int, key: str = "answer") -> int:
    """An answer given as a 0-based option index, checked to be in range."""
    try:
        index = int_field({key: answer}, key)
    except RowError:
        raise RowError(f"{key!r} must be an option index, got {answer!r}") from None
    if not 0 <= index < n_options:
        raise RowError(f"{key!r} is {index}, out of range for {n_options} options")
    return index


def text_index(answer: Any, options: Sequence[str], key: str = "answer") -> int:
    """Index of the one option whose text is `answer` (case and spacing ignored)."""
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise RowError(f"{key!r} must be an option's text, got {answer!r}")
    wanted = normalise_answer(str(answer))
    hits = [i for i, option in enumerate(options) if normalise_answer(option) == wanted]
    if not hits:
        raise RowError(f"{key!r} {str(answer)[:60]!r} is none of the {len(options)} options")
    if len(hits) > 1:
        raise RowError(f"{key!r} {str(answer)[:60]!r} matches several options ({', '.join(option_letter(i) for i in hits)})")
    return hits[0]


def relative_key(path: str, data_dir: str, video_dir: str) -> str:
    """The video's key: its path relative to the data folder (or to `video_dir` when outside it)."""
    base = data_dir if os.path.commonpath([path, data_dir]) == data_dir else video_dir
    return os.path.relpath(path, base).replace(os.sep, "/")


def first_existing(paths: Iterable[str]) -> str | None:
    """The first of `paths` that is a file, or None."""
    for path in paths:
        if os.path.isfile(path):
            return path
    return None


def load_json_file(path: str) -> Any:
    """A whole JSON document; BenchmarkError naming the file when unreadable."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchmarkError(f"{path}: cannot read JSON: {exc}") from None


# ---------------------------------------------------------------------------
# Scoring: per-question outcomes -> cells.


@dataclass(frozen=True)
class Outcome:
    """One scored question: its id, whether the teacher chose the right option, and its sample's meta.

    `meta` holds the sample's meta (question type, duration group, task...)
    plus the prediction record's own fields (e.g. `subtitles`, the setting).
    """

    sample_id: str
    correct: bool
    meta: Mapping[str, Any]


@dataclass(frozen=True)
class Skip:
    """One question that was not scored, and why (missing video, extraction error, bad row...).

    `meta` is the sample's meta when known; a skip whose meta lacks a
    breakdown's key (e.g. a bad row) counts in the overall score only.
    """

    sample_id: str | None
    reason: str
    meta: Mapping[str, Any]


def accuracy_cell(outcomes: Iterable[Outcome], skips: Iterable[Skip] = ()) -> dict:
    """One score: `accuracy` (fraction in [0, 1], None when nothing was scored),
    `correct` and `n` (questions scored), `skipped` and `skipped_by_reason`."""
    outcomes, skips = list(outcomes), list(skips)
    correct = sum(1 for o in outcomes if o.correct)
    reasons = Counter(s.reason for s in skips)
    return {
        "accuracy": correct / len(outcomes) if outcomes else None,
        "correct": correct,
        "n": len(outcomes),
        "skipped": len(skips),
        "skipped_by_reason": dict(sorted(reasons.items())),
    }


def cells_by(outcomes: Sequence[Outcome], skips: Sequence[Skip], key: Callable[[Mapping], Any],
             order: Sequence[str] = ()) -> dict[str, dict]:
    """One `accuracy_cell` per group, the group of a question being `key(meta)` as a string.

    Groups come in `order` first (those present), then the others sorted. A
    scored question whose key is None goes to group "unknown"; a skip whose key
    is None is counted in no group (it could not be placed, e.g. a bad row).
    """
    groups: dict[str, tuple[list, list]] = {}
    for o in outcomes:
        value = key(o.meta)
        groups.setdefault("unknown" if value is None else str(value), ([], []))[0].append(o)
    for s in skips:
        value = key(s.meta)
        if value is not None:
            groups.setdefault(str(value), ([], []))[1].append(s)
    names = [g for g in order if g in groups] + sorted((g for g in groups if g not in order), key=_natural)
    return {g: accuracy_cell(*groups[g]) for g in names}


def _natural(text: str) -> tuple:
    """Sort key that puts "15" before "600" and numbers before words."""
    return (0, float(text), "") if re.fullmatch(r"-?\d+(\.\d+)?", text) else (1, 0.0, text)


def by_subtitle_setting(outcomes: Sequence[Outcome], skips: Sequence[Skip],
                        breakdown: Callable[[list[Outcome], list[Skip]], dict]) -> dict[str, dict]:
    """`breakdown(outcomes, skips)` of each subtitle setting, keyed by `SUBTITLE_SETTINGS`.

    A question's setting is its record's `subtitles` flag (absent = without);
    the two settings are scored apart, as lmms-eval's two tasks are. A skip
    without the flag (e.g. a missing video) counts in every setting;
    "without_subtitles" is always reported, "with_subtitles" when scored.
    """
    out = {}
    for flag, setting in SUBTITLE_SETTINGS.items():
        mine = [o for o in outcomes if bool(o.meta.get("subtitles", False)) == flag]
        if not mine and flag:
            continue
        skipped = [s for s in skips if s.meta.get("subtitles") is None or bool(s.meta["subtitles"]) == flag]
        out[setting] = breakdown(mine, skipped)
    return out


def macro_average(cells: Mapping[str, Mapping], skips: Sequence[Skip], expected: Sequence[str] = ()) -> dict:
    """The mean of the groups' accuracies (each group weighs the same), e.g. MLVU's M-Avg.

    `n` and the skip counts are over all questions (`skips` are all the
    skips, placed in a group or not). Groups with nothing scored are left out
    of the mean and listed in `groups_unscored` (with `expected`, groups that
    never appeared too), so a partial run is visible instead of being counted
    as 0 %; `partial` is true when any group is unscored (the mean is then not
    the benchmark's published macro average). `zero_filled_accuracy` (with `expected`) is the mean over
    every expected group with an unscored one counted as 0, as lmms-eval's MLVU aggregation counts
    it (`mlvu_aggregate_results_dev` divides by its 7 tasks whatever was scored); None otherwise.
    """
    scored = {g: c for g, c in cells.items() if c["n"]}
    unscored = [g for g in cells if not cells[g]["n"]] + [g for g in expected if g not in cells]
    total = accuracy_cell((), skips)
    return {
        "accuracy": sum(c["accuracy"] for c in scored.values()) / len(scored) if scored else None,
        "n": sum(c["n"] for c in cells.values()),
        "skipped": total["skipped"],
        "skipped_by_reason": total["skipped_by_reason"],
        "groups_scored": len(scored),
        "groups_unscored": unscored,
        "partial": bool(unscored),
        "zero_filled_accuracy": (sum(cells[g]["accuracy"] if g in cells and cells[g]["n"] else 0.0 for g in expected)
                                 / len(expected) if expected else None),
    }
