"""Benchmark scoring: prediction records -> each benchmark's own breakdown, per selector; comparison tables.

lmms-eval's split, kept: per question, `hfs evaluate` writes a prediction
record (the per-question metric is `correct`); per benchmark, the benchmark's
module (`hfs.manifests.benchmarks.<name>`) aggregates the records into the
breakdown its paper reports (`Benchmark.aggregate`). This module is the
machinery around that: it checks the records, turns them into `Outcome`s and
the caller's skip records into `Skip`s, groups them by selector, and renders
several selectors side by side.

A prediction record is a mapping with:

- `sample_id` (or `question_id`): the question's id (`QASample.sample_id`);
- `selector`: the frame selector's name ("uniform", "clip", "hfs"...);
- `prediction`: the chosen option, an index (0-based) or a letter, or None
  when the teacher's answer could not be parsed;
- `correct` (bool): whether the chosen option is the right one;
- the sample's meta, flat or under `meta` (question type, duration group,
  task...: what the benchmark's breakdown groups by);
- optionally `subtitles` (bool): the setting (Video-MME, LongVideoBench) the
  question was asked in (absent = without subtitles; the two settings are
  scored apart), and `answer_index` (checked against `prediction` and
  `correct`).

A skip record says why a question was not scored: `reason` (e.g. "missing
video", "extraction error", "bad row"), optionally `sample_id`, `selector`
(absent = every selector), `subtitles` (absent = every setting) and the
sample's meta (flat or under `meta`), so the skip counts in its group.
`BenchmarkData.skips()` gives the reader's ones.

Every score cell says on how many questions it was computed (`n`) and how
many were skipped, by reason (`skipped`, `skipped_by_reason`); `accuracy` is
a fraction in [0, 1] (None when nothing was scored). A selector's headline
cell also says how many questions the benchmark has (`of`, N), so a score is
read as "over n of N questions".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hfs.manifests.answers import letter_index, option_letter
from hfs.manifests.benchmarks import Outcome, Skip, get_benchmark
from hfs.manifests.records import QASample

logger = logging.getLogger(__name__)

NO_PREDICTION = "no prediction"  # skip reason of an expected question that has neither a prediction nor a skip
_RESERVED = ("sample_id", "question_id", "selector", "prediction", "correct", "meta")
_LETTER = re.compile(r"^\s*\(?([A-Za-z])\)?\.?\s*$")


class ScoringError(ValueError):
    """Prediction or skip records that cannot be scored (the message names the record)."""


def prediction_index(prediction: Any) -> int | None:
    """The 0-based option index of a prediction given as an index or a letter ("B", "(b)"); None if absent."""
    if prediction is None:
        return None
    if isinstance(prediction, bool):
        raise ScoringError(f"prediction must be an option index or letter, got {prediction!r}")
    if isinstance(prediction, int):
        if prediction < 0:
            raise ScoringError(f"prediction index must be >= 0, got {prediction}")
        return prediction
    if isinstance(prediction, str):
        m = _LETTER.match(prediction)
        if m:
            return letter_index(m.group(1))
        if prediction.strip().isdigit():
            return int(prediction)
    raise ScoringError(f"prediction must be an option index or letter, got {prediction!r}")


def prediction_record(sample: QASample, selector: str, prediction: int | str | None, *,
                      subtitles: bool = False) -> dict:
    """The prediction record of one answered question (what `predictions.jsonl` holds, one per line).

    `prediction` is the teacher's chosen option (index or letter, None when
    its answer could not be parsed); `correct` is decided against
    `sample.answer_index`; the sample's meta is copied flat so the benchmark
    can break the score down; `subtitles` marks the "with subtitles" setting.
    """
    index = prediction_index(prediction)
    record = {**sample.meta, "sample_id": sample.sample_id, "selector": selector,
              "prediction": None if index is None else option_letter(index),
              "correct": index is not None and index == sample.answer_index, "answer_index": sample.answer_index}
    if subtitles:
        record["subtitles"] = True
    return record


def _meta_of(record: Mapping) -> dict:
    """The record's meta: its `meta` mapping, then its other non-reserved fields on top."""
    nested = record.get("meta") or {}
    if not isinstance(nested, Mapping):
        raise ScoringError(f"'meta' must be a mapping, got {type(nested).__name__}")
    return {**nested, **{k: v for k, v in record.items() if k not in _RESERVED}}


def _sample_id(record: Mapping, where: str) -> str:
    """The record's question id (`sample_id`, else `question_id`) as text."""
    value = record.get("sample_id", record.get("question_id"))
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise ScoringError(f"{where}: needs a 'sample_id' (or 'question_id'), got {value!r}")
    return str(value)


def outcomes_by_selector(predictions: Iterable[Mapping]) -> dict[str, list[Outcome]]:
    """Checked `Outcome`s of the prediction records, grouped by selector (in order of appearance).

    ScoringError on a record without a selector, id or boolean `correct`, with
    a prediction that is neither index nor letter, whose `correct` disagrees
    with `prediction` and `answer_index`, or that repeats a (selector,
    question, setting) already seen.
    """
    out: dict[str, list[Outcome]] = {}
    seen: set[tuple[str, str, bool]] = set()
    for k, record in enumerate(predictions):
        where = f"prediction record {k}"
        if not isinstance(record, Mapping):
            raise ScoringError(f"{where}: expected a mapping, got {type(record).__name__}")
        sample_id = _sample_id(record, where)
        where = f"{where} ({sample_id!r})"
        selector = record.get("selector")
        if not isinstance(selector, str) or not selector:
            raise ScoringError(f"{where}: needs a 'selector' name, got {selector!r}")
        correct = record.get("correct")
        if not isinstance(correct, bool) and correct not in (0, 1):
            raise ScoringError(f"{where}: 'correct' must be true or false, got {correct!r}")
        try:
            index = prediction_index(record.get("prediction"))
        except ScoringError as exc:
            raise ScoringError(f"{where}: {exc}") from None
        meta = _meta_of(record)
        answer = meta.get("answer_index")
        if index is not None and isinstance(answer, int) and (index == answer) != bool(correct):
            raise ScoringError(f"{where}: prediction {index} and answer_index {answer} disagree with correct={correct}")
        key = (selector, sample_id, bool(meta.get("subtitles", False)))
        if key in seen:
            raise ScoringError(f"{where}: a second prediction of selector {selector!r} for this question and setting")
        seen.add(key)
        meta["prediction_index"] = index
        out.setdefault(selector, []).append(Outcome(sample_id, bool(correct), meta))
    return out


def _skips(records: Iterable[Mapping]) -> list[tuple[str | None, Skip]]:
    """(selector or None for all, Skip) of each skip record, checked."""
    out = []
    for k, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ScoringError(f"skip record {k}: expected a mapping, got {type(record).__name__}")
        reason = record.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ScoringError(f"skip record {k}: needs a 'reason', got {reason!r}")
        sample_id = record.get("sample_id", record.get("question_id"))
        selector = record.get("selector")
        meta = {k2: v for k2, v in _meta_of(record).items() if k2 != "reason"}
        out.append((selector, Skip(None if sample_id is None else str(sample_id), reason.strip(), meta)))
    return out


def score_benchmark(
    benchmark: str,
    predictions: Iterable[Mapping],
    skipped: Iterable[Mapping] = (),
    expected: Iterable[QASample | str] | None = None,
    total: int | None = None,
) -> dict:
    """Scores of every selector in `predictions` on one benchmark, with its own breakdown.

    `benchmark` is a registered name ("nextqa", "videomme", "longvideobench",
    "mlvu"); `skipped` are skip records (see the module docstring); with
    `expected` (the benchmark's samples or their ids), an expected question
    that a selector neither predicted nor skipped counts as skipped with
    reason "no prediction". A skip for a question the selector did score is
    dropped (the prediction wins). `total` is N, the questions in the
    benchmark (`BenchmarkData.question_count()`), given to each headline cell
    as `of` (None when not given). Returns a JSON-able dict:
    `{"benchmark", "title", "selectors": {name: aggregate}, "headline": {name: cell}}`.
    """
    bench = get_benchmark(benchmark)
    by_selector = outcomes_by_selector(predictions)
    skips = _skips(skipped)
    expected = list(expected) if expected is not None else None
    result = {"benchmark": bench.name, "title": bench.title, "selectors": {}, "headline": {}}
    for selector, outcomes in by_selector.items():
        scored = {o.sample_id for o in outcomes}
        mine = [s for sel, s in skips if sel in (None, selector) and s.sample_id not in scored]
        dropped = sum(1 for sel, s in skips if sel in (None, selector) and s.sample_id in scored)
        if dropped:
            logger.debug("%s/%s: %d skip records of scored questions dropped", bench.name, selector, dropped)
        if expected is not None:
            accounted = scored | {s.sample_id for s in mine}
            for sample in expected:
                sid = sample.sample_id if isinstance(sample, QASample) else str(sample)
                if sid not in accounted:
                    meta = dict(sample.meta) if isinstance(sample, QASample) else {}
                    mine.append(Skip(sid, NO_PREDICTION, meta))
        aggregate = bench.aggregate(outcomes, mine)
        result["selectors"][selector] = aggregate
        result["headline"][selector] = {**bench.headline(aggregate), "of": total}
    unused = {sel for sel, _ in skips if sel is not None} - set(by_selector)
    if unused:
        logger.warning("%s: skip records name selector(s) without predictions: %s",
                       bench.name, ", ".join(sorted(unused)))
    return result


# ---------------------------------------------------------------------------
# Tables.


def format_cell(cell: Mapping | None) -> str:
    """A cell as "62.3 (900)": accuracy in percent and the number of questions scored; "—" when none."""
    if not cell or cell.get("accuracy") is None:
        return "—"
    return f"{100 * cell['accuracy']:.1f} ({cell['n']})"


def comparison_rows(scores: Mapping) -> tuple[list[str], list[list[str]]]:
    """Header and rows comparing the selectors of `score_benchmark`'s result side by side.

    One row per metric the benchmark shows (`Benchmark.table_metrics`, e.g.
    short/medium/long/overall per subtitle setting for Video-MME), one column
    per selector, cells as `format_cell`; a last row "skipped" gives each
    selector's number of skipped questions (headline cell). Rendering (rich,
    markdown) is the caller's.
    """
    bench = get_benchmark(scores["benchmark"])
    selectors = list(scores["selectors"])
    labels: list[str] = []
    cells: dict[tuple[str, str], Mapping] = {}
    for selector in selectors:
        for label, cell in bench.table_metrics(scores["selectors"][selector]):
            if label not in labels:
                labels.append(label)
            cells[(label, selector)] = cell
    rows = [[label] + [format_cell(cells.get((label, s))) for s in selectors] for label in labels]
    rows.append(["skipped"] + [str(scores["headline"][s]["skipped"]) for s in selectors])
    return [scores.get("title", bench.title)] + selectors, rows


def headline_lines(scores: Mapping) -> list[str]:
    """One line per selector of `score_benchmark`'s result: its headline metric "over n of N
    questions", and the skipped ones by reason, e.g. "hfs: overall 62.3 % over 900 of 1000
    questions (100 skipped: 60 missing video, 40 bad row)"."""
    label = get_benchmark(scores["benchmark"]).headline_label
    lines = []
    for selector, cell in scores["headline"].items():
        accuracy = "—" if cell.get("accuracy") is None else f"{100 * cell['accuracy']:.1f} %"
        of = "" if cell.get("of") is None else f" of {cell['of']}"
        noun = "question" if (cell["n"] if cell.get("of") is None else cell["of"]) == 1 else "questions"
        line = f"{selector}: {label} {accuracy} over {cell['n']}{of} {noun}"
        if cell["skipped"]:
            reasons = ", ".join(f"{n} {reason}" for reason, n in cell["skipped_by_reason"].items())
            line += f" ({cell['skipped']} skipped: {reasons})"
        lines.append(line)
    return lines


def note_lines(scores: Mapping) -> list[str]:
    """The benchmark's notes on each selector's scores (`Benchmark.notes`), as "selector: note"
    lines; e.g. MLVU's M-Avg over fewer than its 7 tasks."""
    bench = get_benchmark(scores["benchmark"])
    return [f"{selector}: {note}" for selector, aggregate in scores["selectors"].items()
            for note in bench.notes(aggregate)]


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """`comparison_rows` as aligned plain text (for logs and tests)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    return "\n".join(lines)
