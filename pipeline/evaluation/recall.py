"""Ground truth of answer-bearing frames, and how well frame selections find them.

A task that knows where its answers are shown (the synthetic task of ``hfs demo``, or any
other that writes the same file) writes ``ground_truth.jsonl``: one ``QuestionTruth`` per
line, its events in time order, each with the indices of the N-frame grid that show it.
``read_ground_truth`` is the one reader of that file; ``event_recall`` scores selections
against it (event recall@k: the share of questions with at least one selected
answer-bearing frame) and ``selector_rows`` puts recall beside answer accuracy for each
selector of a ``predictions.jsonl``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hfs.pipeline.evaluation.selectors.basic import uniform_indices

__all__ = ["EventTruth", "QuestionTruth", "TruthError", "read_ground_truth", "EventRecall", "event_recall",
           "SelectorRow", "selector_rows", "oracle_indices"]


class TruthError(ValueError):
    """A ground-truth file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class EventTruth:
    """Where one answer-bearing event is: seconds, video frames and grid frames.

    [start_s, end_s) seconds, frames [start_frame, end_frame), `grid_hits` the
    indices on the N-frame grid that show it (may be empty).
    """

    colour: str
    shape: str
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int
    grid_hits: tuple[int, ...]


@dataclass(frozen=True)
class QuestionTruth:
    """Ground truth of one question, one line of `ground_truth.jsonl`.

    `sample_id` is the id the split's reader produces (`read_manifest` for
    train, the NExT-QA reader for test), `qid` the NExT-QA question id (None
    for train), `video` the file relative to the task folder, `grid_n` the
    grid size N, `events` the answer-bearing events in time order, `distractors` the video's
    other events (a query-aware task's; empty where every event bears the answer, and in
    files written before there were any).
    """

    sample_id: str
    split: str
    qid: int | None
    video: str
    kind: str
    type: str
    question: str
    options: tuple[str, ...]
    answer_index: int
    duration_s: float
    fps: float
    n_frames: int
    grid_n: int
    events: tuple[EventTruth, ...]
    distractors: tuple[EventTruth, ...] = ()

    @property
    def grid_hits(self) -> tuple[int, ...]:
        """Every answer-bearing grid index, sorted (the union over events)."""
        return tuple(sorted({i for e in self.events for i in e.grid_hits}))

    def to_json(self) -> dict:
        """JSON-able dict (tuples as lists), with the union `grid_hits` added for readers."""
        record = json.loads(json.dumps(dataclasses.asdict(self)))
        record["grid_hits"] = list(self.grid_hits)
        return record

    @classmethod
    def from_json(cls, record: Mapping) -> "QuestionTruth":
        """Inverse of `to_json` (the extra `grid_hits` key is recomputed, not read)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in fields}
        values["options"] = tuple(values["options"])
        for name in ("events", "distractors"):
            values[name] = tuple(EventTruth(**{**e, "grid_hits": tuple(e["grid_hits"])})
                                 for e in record.get(name, ()))
        return cls(**values)




def read_ground_truth(path: str | Path) -> dict[str, QuestionTruth]:
    """``ground_truth.jsonl`` as sample_id → ``QuestionTruth`` (TruthError naming file:line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TruthError(f"{path}: no such file (a task's ground_truth.jsonl)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise TruthError(f"{path}: cannot read it as text: {err}") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):  # every line JSON first, then every line a truth
        if line.strip():
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise TruthError(f"{path}:{number}: not valid JSON ({err.msg}); is this a ground_truth.jsonl?") from None
    truths = {}
    for number, record in records:
        try:
            truth = QuestionTruth.from_json(record)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise TruthError(f"{path}:{number}: not a ground-truth line ({type(err).__name__}: {err})") from None
        truths[truth.sample_id] = truth
    if not truths:
        raise TruthError(f"{path}: empty (a task's ground_truth.jsonl)")
    return truths


@dataclass(frozen=True)
class EventRecall:
    """How well frame selections find the answer-bearing frames.

    Attributes:
        n: questions scored (in the ground truth and selected).
        recall: event recall@k, the share of questions with at least one
            selected answer-bearing grid frame (None when n = 0).
        all_events_recall: the share with a selected frame in *every* event
            (what an order question needs; equals `recall` for one-event questions).
        mean_hits: mean number of selected answer-bearing grid frames per question.
        reachable: the share of questions with any answer-bearing grid frame
            at all (the ceiling of `recall`).
        missing: ground-truth ids without a selection (not scored).
    """

    n: int
    recall: float | None
    all_events_recall: float | None
    mean_hits: float | None
    reachable: float | None
    missing: tuple[str, ...] = ()


def event_recall(selected: Mapping[str, Sequence[int]], truth: Mapping[str, QuestionTruth],
                 k: int | None = None) -> EventRecall:
    """Score frame selections (sample_id -> grid indices 0 .. N-1) against the ground truth.

    With `k`, only the first k indices of each selection count (selections
    listed best first); repeated indices count once. Selections for ids the
    ground truth does not know, or indices off the grid, raise ValueError.
    """
    unknown = sorted(set(selected) - set(truth))
    if unknown:
        raise ValueError(f"{len(unknown)} selections have no ground truth (e.g. {', '.join(unknown[:3])})")
    scored = [sid for sid in truth if sid in selected]
    any_hit = all_hit = reachable = 0
    hits_total = 0
    for sid in scored:
        gt = truth[sid]
        chosen = set(selected[sid][:k] if k is not None else selected[sid])
        off = [i for i in chosen if not 0 <= i < gt.grid_n]
        if off:
            raise ValueError(f"{sid}: indices {sorted(off)[:5]} are off the {gt.grid_n}-frame grid")
        hits = chosen & set(gt.grid_hits)
        hits_total += len(hits)
        any_hit += bool(hits)
        all_hit += all(chosen & set(e.grid_hits) for e in gt.events)
        reachable += bool(gt.grid_hits)
    n = len(scored)
    share = (lambda count: count / n) if n else (lambda count: None)
    return EventRecall(n, share(any_hit), share(all_hit), share(hits_total), share(reachable),
                       tuple(sid for sid in truth if sid not in selected))


def oracle_indices(truth: QuestionTruth, k: int) -> list[int]:
    """The oracle selection: the answer-bearing grid frames (at most k, each event's first
    ones first) filled up to k with the segment centres ⌊(j + ½)·N/k⌋ not already taken; ascending.

    With k at least the number of answer-bearing frames it holds all of them, so its event
    recall is the ceiling (`EventRecall.reachable`).
    """
    n = truth.grid_n
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    chosen: list[int] = []
    for rank in range(max((len(e.grid_hits) for e in truth.events), default=0)):  # round robin over events
        for e in truth.events:
            if rank < len(e.grid_hits) and e.grid_hits[rank] not in chosen and len(chosen) < k:
                chosen.append(e.grid_hits[rank])
    for centre in uniform_indices(n, k):  # k centres, at most len(chosen) of them taken: enough to fill
        if len(chosen) == k:
            break
        if centre not in chosen:
            chosen.append(centre)
    return sorted(chosen)


@dataclass
class SelectorRow:
    """One selector on the held-out questions: event recall@k (share of questions whose
    selected frames include an answer-bearing one), mean answer-bearing frames selected,
    and answer accuracy."""

    selector: str
    questions: int
    event_recall: float
    mean_hits: float
    accuracy: float


def selector_rows(predictions: Sequence[Mapping], truth: Mapping, k: int) -> list[SelectorRow]:
    """Per selector (in order of appearance) from ``predictions.jsonl`` records and the ground truth."""
    rows = []
    for selector in dict.fromkeys(r["selector"] for r in predictions):
        mine = [r for r in predictions if r["selector"] == selector and not r.get("subtitles")]
        recall = event_recall({r["sample_id"]: r["indices"] for r in mine}, truth, k=k)
        accuracy = sum(bool(r["correct"]) for r in mine) / len(mine) if mine else float("nan")
        rows.append(SelectorRow(selector, len(mine), recall.recall, recall.mean_hits, accuracy))
    return rows
