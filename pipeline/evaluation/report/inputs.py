"""Reading the report's inputs: ``hfs select`` / ``hfs evaluate`` records and a training run's log.

Each reader names ``file:line`` for a line it cannot use (``ReportError``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hfs.pipeline.train.run_folder import METRICS_FILE, RUN_CONFIG_FILE

log = logging.getLogger(__name__)



SELECTION_FIELDS = ("sample_id", "video_id", "selector", "indices")
PREDICTION_FIELDS = SELECTION_FIELDS + ("prediction", "correct")


class ReportError(ValueError):
    """An input the report cannot use; the message names the file (and line) or the record."""


class Question(NamedTuple):
    """What the page shows of a question. ``QASample`` and ``QuestionTruth`` have the same fields."""

    question: str
    options: tuple[str, ...] = ()
    answer_index: int | None = None


@dataclass(frozen=True)
class RunLog:
    """A training run as the report shows it: its folder's name, ``metrics.jsonl`` lines, ``config.json``."""

    name: str
    metrics: list[dict]
    config: dict | None = None




def _read_jsonl(path: str | Path, what: str) -> list[tuple[int, dict]]:
    """(line number, object) of every non-empty line of a JSONL file; ReportError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such file ({what})")
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: cannot read it as text ({what}): {err}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ReportError(f"{path}:{number}: not valid JSON ({err.msg}); is this {what}?") from None
        if not isinstance(record, dict):
            raise ReportError(f"{path}:{number}: a JSON {type(record).__name__}, expected an object ({what})")
        out.append((number, record))
    if not out:
        raise ReportError(f"{path}: empty ({what})")
    return out


def check_record(record: Mapping, where: str, required: Sequence[str]) -> None:
    """ReportError (prefixed by ``where``) unless ``record`` is a usable selection / prediction record."""
    missing = [f for f in required if f not in record]
    if missing:
        raise ReportError(f"{where}: missing field(s) {', '.join(missing)}")
    for name in ("sample_id", "video_id", "selector"):
        if not isinstance(record[name], str) or not record[name]:
            raise ReportError(f"{where}: '{name}' must be a non-empty string, got {record[name]!r}")
    indices = record["indices"]
    if (not isinstance(indices, list) or not indices
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)):
        raise ReportError(f"{where}: 'indices' must be a non-empty list of frame indices >= 0, got {indices!r}")
    scores = scores_of(record)
    if scores is not None and (not isinstance(scores, list)
                               or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores)):
        raise ReportError(f"{where}: scores must be a list of numbers or null")
    if scores is not None and max(indices) >= len(scores):
        raise ReportError(f"{where}: index {max(indices)} is past the {len(scores)} frame scores")
    if "correct" in record and not isinstance(record["correct"], bool):
        raise ReportError(f"{where}: 'correct' must be true or false, got {record['correct']!r}")


def scores_of(record: Mapping) -> Any:
    """s_i of every frame: ``scores`` (``hfs select``) or ``frame_scores`` (``hfs evaluate``)."""
    return record.get("scores", record.get("frame_scores"))


def _read_records(path: str | Path, what: str, fields) -> list[dict]:
    records = []
    for number, record in _read_jsonl(path, what):
        check_record(record, f"{path}:{number}", fields)
        records.append(record)
    return records


def read_selections(path: str | Path) -> list[dict]:
    """The records of one ``hfs select`` JSONL file (ReportError naming file:line for a bad line)."""
    return _read_records(path, "an `hfs select` JSONL file", SELECTION_FIELDS)


def read_selection_files(paths: Sequence[str | Path]) -> list[dict]:
    """The records of several ``hfs select`` files. A selector name that occurs in more than one
    file (two runs' ``hfs``, say) is told apart by the file's name: ``hfs (run-a)``."""
    per_file = [(Path(p), read_selections(p)) for p in paths]
    files_of: dict[str, set[Path]] = {}
    for path, records in per_file:
        for r in records:
            files_of.setdefault(r["selector"], set()).add(path)
    out = []
    for path, records in per_file:
        for r in records:
            if len(files_of[r["selector"]]) > 1:
                r = {**r, "selector": f"{r['selector']} ({path.stem})"}
            out.append(r)
    return out


def read_predictions(path: str | Path) -> list[dict]:
    """The records of an ``hfs evaluate`` ``predictions.jsonl`` (ReportError naming file:line)."""
    return _read_records(path, "an `hfs evaluate` predictions.jsonl", PREDICTION_FIELDS)


def find_run_folder(path: str | Path) -> Path | None:
    """The run folder holding ``metrics.jsonl``: ``path`` itself or one of its three parents (so a
    checkpoint ``runs/NAME/checkpoints/step-N/model`` finds ``runs/NAME``); None when there is none."""
    path = Path(path)
    for folder in [path, *list(path.parents)[:3]]:
        if (folder / METRICS_FILE).is_file():
            return folder
    return None


def read_run(path: str | Path) -> RunLog:
    """A run's ``metrics.jsonl`` and ``config.json`` (see ``find_run_folder``); ReportError when absent or garbled."""
    folder = find_run_folder(path)
    if folder is None:
        raise ReportError(f"{path}: no {METRICS_FILE} there or in its parent folders; is this a run folder "
                          "made by `hfs train --out`?")
    metrics = []
    for number, record in _read_jsonl(folder / METRICS_FILE, f"a training run's {METRICS_FILE}"):
        if not isinstance(record.get("step"), int):
            raise ReportError(f"{folder / METRICS_FILE}:{number}: no integer 'step'")
        metrics.append(record)
    config = None
    if (folder / RUN_CONFIG_FILE).is_file():
        try:
            config = json.loads((folder / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReportError(f"{folder / RUN_CONFIG_FILE}: not valid JSON ({err})") from None
    return RunLog(folder.resolve().name, metrics, config)


