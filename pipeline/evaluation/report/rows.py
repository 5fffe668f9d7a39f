"""Records → what the page shows: one row per question with each selector's pick, colours per selector.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hfs.pipeline.evaluation.report.inputs import (
    PREDICTION_FIELDS,
    SELECTION_FIELDS,
    Question,
    ReportError,
    check_record,
    scores_of,
)

log = logging.getLogger(__name__)



# One colour per selector, the same in every report; others take the rest of tab10 in turn.
KNOWN_COLOURS = {"hfs": "#1f77b4", "clip": "#ff7f0e", "hfs-set": "#2ca02c", "uniform": "#7f7f7f",
                 "random": "#8c564b"}
OTHER_COLOURS = ("#9467bd", "#e377c2", "#17becf", "#d62728", "#bcbd22")



@dataclass
class Pick:
    """One selector's frames for one question: grid indices (0 .. N-1), s_i of all N frames
    (None for selectors that do not score, e.g. uniform), and the teacher's answers by
    subtitle setting (letter or None, correct)."""

    indices: list[int]
    scores: list[float] | None
    answers: dict[bool, tuple[str | None, bool]] = field(default_factory=dict)


@dataclass
class QuestionRow:
    """Every selector's pick for one question, in the order the selectors first appear."""

    sample_id: str
    video_id: str
    picks: dict[str, Pick] = field(default_factory=dict)
    answer_index: int | None = None


def collect_rows(selections: Sequence[Mapping], predictions: Sequence[Mapping]) -> tuple[list[str], dict[str, QuestionRow]]:
    """Selectors in order of appearance and one QuestionRow per question (in order of appearance).

    A (selector, question) may occur several times (a selection file and predictions, or both
    subtitle settings) when its frames agree; different frames are a ReportError.
    """
    selectors: list[str] = []
    rows: dict[str, QuestionRow] = {}
    tagged = [(r, f"selection record {i}", SELECTION_FIELDS) for i, r in enumerate(selections)]
    tagged += [(r, f"prediction record {i}", PREDICTION_FIELDS) for i, r in enumerate(predictions)]
    for record, where, required in tagged:
        check_record(record, where, required)
        sid, selector = record["sample_id"], record["selector"]
        row = rows.setdefault(sid, QuestionRow(sid, record["video_id"]))
        if row.video_id != record["video_id"]:
            raise ReportError(f"{where}: question {sid} is on video {record['video_id']}, elsewhere on {row.video_id}")
        if selector not in selectors:
            selectors.append(selector)
        indices = [int(i) for i in record["indices"]]
        pick = row.picks.get(selector)
        if pick is None:
            pick = row.picks[selector] = Pick(indices, scores_of(record))
        elif sorted(pick.indices) != sorted(indices):
            raise ReportError(f"{where}: {selector} selected other frames for {sid} in another record "
                              f"({sorted(indices)} vs {sorted(pick.indices)})")
        elif pick.scores is None:
            pick.scores = scores_of(record)
        if "prediction" in record:
            pick.answers[bool(record.get("subtitles", False))] = (record["prediction"], record["correct"])
        if record.get("answer_index") is not None:
            row.answer_index = record["answer_index"]
    return selectors, rows


def as_question(value: Any) -> Any:
    """``QASample``, ``QuestionTruth`` and ``Question`` as they are; a plain (question, options,
    answer_index) tuple as a ``Question``."""
    if hasattr(value, "question"):
        return value
    if isinstance(value, (tuple, list)) and 1 <= len(value) <= 3:
        return Question(str(value[0]), tuple(value[1]) if len(value) > 1 else (), value[2] if len(value) > 2 else None)
    raise ReportError(f"a question must have question, options and answer_index, got {value!r}")


def selector_colours(selectors: Sequence[str]) -> dict[str, str]:
    others = iter(OTHER_COLOURS * (len(selectors) // len(OTHER_COLOURS) + 1))
    return {s: KNOWN_COLOURS.get(s) or next(others) for s in selectors}


def section_ids(sample_ids: Iterable[str]) -> dict[str, str]:
    """A distinct HTML id per question, readable from its sample id: ``q-<id>``."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for sid in sample_ids:
        base = "q-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", sid).strip("-") or "question")
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        ids[sid] = name
    return ids


