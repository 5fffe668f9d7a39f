"""`hfs report`: one self-contained HTML page to look at frame selections.

The page shows, at the top, the selectors side by side (questions, k, accuracy when
predictions are given, event recall@k and answer-bearing frames found when the synthetic
task's ground truth is given, the benchmark's own breakdown from ``scores.json``) and an
index of the questions; then a training run's curves from its ``metrics.jsonl`` (every
loss term of Eq. 21, τ, λ_KL, lr); then one ``<section class="question">`` per question:
the question and its options with the answer and each selector's prediction marked, the
strip of the N cached frames with each selector's k selected frames marked, the frames
that show the answer shaded, and the selection scores s_i over the N frames.

Everything is inside the one file: the thumbnails are the cache's teacher JPEGs
downscaled with PIL (``thumb_height`` pixels high) and embedded as base64 data URIs
(WebP by default: at 48 px high a real frame is ~0.65 KB in WebP against ~1.05 KB in
JPEG, whose per-image Huffman and quantisation tables dominate at that size); the plots
are matplotlib figures inlined as SVG. There is no script and no network reference.
A page with 128 thumbnails per question grows by ~100-200 KB per question, so only the
first ``max_questions`` questions get a section (the summary counts all of them).

Inputs are plain records, as the stages write them: ``hfs select``'s JSONL (one selector
per file, ``scores``) and ``hfs evaluate``'s ``predictions.jsonl`` (several selectors,
``frame_scores``, ``prediction``, ``correct``). ``read_*`` turn files into records and
name ``file:line`` for a line they cannot use; ``render_report`` writes the page
(atomically); ``write_evaluation_report`` is what ``hfs evaluate`` and ``hfs demo`` call.
"""

from __future__ import annotations

import html
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hfs.cache import CacheError, FeatureCache
from hfs.cache.format import atomic_write_bytes
from hfs.manifests.answers import option_letter
from hfs.manifests.benchmarks import get_benchmark
from hfs.pipeline.decode import segment_centre_timestamps
from hfs.pipeline.evaluation.recall import TruthError, event_recall, read_ground_truth
from hfs.pipeline.evaluation.report.inputs import ReportError, RunLog, find_run_folder, read_predictions, read_run
from hfs.pipeline.evaluation.report.plots import TRUTH_COLOUR, check_thumb_format, score_plot, thumbnails, training_plot
from hfs.pipeline.evaluation.report.rows import (
    Pick,
    QuestionRow,
    as_question,
    collect_rows,
    section_ids,
    selector_colours,
)
from hfs.pipeline.evaluation.scoring import comparison_rows, prediction_index
from hfs.pipeline.train.run_folder import METRICS_FILE

log = logging.getLogger(__name__)


DEFAULT_MAX_QUESTIONS = 50
REPORT_FILE = "report.html"
ANSWER_CLASS = ' class="answer"'


@dataclass(frozen=True)
class ReportSummary:
    """What ``render_report`` wrote: the file, its size, questions shown of all, the selectors."""

    path: Path
    bytes: int
    questions_shown: int
    questions_total: int
    selectors: tuple[str, ...]



CSS = """
:root { font-family: system-ui, sans-serif; font-size: 14px; color: #222; --truth: %(truth)s; }
body { margin: 0 auto; padding: 0 1.5rem 3rem; max-width: 1500px; }
h1 { font-size: 1.5rem; margin: 1.2rem 0 .3rem; }
h2 { font-size: 1.15rem; margin: 0 0 .4rem; }
.meta, .note { color: #555; }
section { border-top: 1px solid #ccc; padding: 1rem 0; }
table { border-collapse: collapse; margin: .4rem 0 .8rem; }
th, td { padding: .2rem .6rem; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.swatch { display: inline-block; width: .8em; height: .8em; margin-right: .3em; background: var(--c); }
.ok { color: #187a2f; } .wrong { color: #b3261e; }
.question-text { font-size: 1.05rem; margin: .3rem 0; }
.options { margin: .2rem 0 .6rem; padding-left: 2rem; }
.options li.answer { font-weight: 600; }
.options li.answer::after { content: " ✓ answer"; color: #187a2f; font-weight: normal; }
.pred { display: inline-block; margin-left: .4em; padding: 0 .35em; border-radius: 3px;
        font-size: .8rem; color: #fff; background: var(--c); font-weight: normal; }
.strip { display: flex; flex-wrap: wrap; gap: 4px 3px; list-style: none; padding: 0; margin: .4rem 0; }
.frame { display: flex; flex-direction: column; gap: 2px; padding: 3px 2px 0; }
.frame.truth { background: var(--truth); }
.frame img, .frame .missing { display: block; opacity: .45; }
.frame .missing { width: 2.2rem; font-size: .7rem; color: #888; text-align: center; }
.frame.picked img, .frame.picked .missing { opacity: 1; outline: 2px solid var(--c, #222); }
.marks { display: flex; height: 5px; gap: 1px; }
.marks i { flex: 1; }
.marks i.selected { background: var(--c); }
figure { margin: .4rem 0; }
figure svg { max-width: 100%%; height: auto; }
svg * { stroke-linejoin: round; stroke-linecap: butt; }
details pre { font-size: .8rem; background: #f6f6f6; padding: .6rem; overflow-x: auto; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(count: int, n: int) -> str:
    return f"{100 * count / n:.1f} % ({count}/{n})" if n else "–"


def _selector_head(selectors: Sequence[str], colours: Mapping[str, str]) -> str:
    return "".join(f'<th data-selector="{_e(s)}"><span class="swatch" style="--c:{colours[s]}"></span>{_e(s)}</th>'
                   for s in selectors)


def _summary_table(selectors: Sequence[str], colours: Mapping[str, str], rows: Mapping[str, QuestionRow],
                   truth: Mapping | None) -> str:
    """The selectors side by side: questions, k, accuracy per subtitle setting, event recall@k."""
    def picks_of(s: str) -> dict[str, Pick]:
        return {sid: r.picks[s] for sid, r in rows.items() if s in r.picks}

    body = [("questions", [str(len(picks_of(s))) for s in selectors])]
    ks = {s: sorted(Counter(len(p.indices) for p in picks_of(s).values())) for s in selectors}
    body.append(("frames selected per question (k)",
                 [str(k[0]) if len(k) == 1 else f"{k[0]}–{k[-1]}" for k in ks.values()]))
    for setting, label in ((False, "accuracy"), (True, "accuracy, with subtitles")):
        answers = {s: [p.answers[setting][1] for p in picks_of(s).values() if setting in p.answers]
                   for s in selectors}
        if any(answers.values()):
            body.append((label, [_pct(sum(a), len(a)) for a in answers.values()]))
    if truth:
        recalls = {}
        for s in selectors:
            selected = {sid: p.indices for sid, p in picks_of(s).items() if sid in truth}
            recalls[s] = event_recall(selected, {sid: truth[sid] for sid in selected}) if selected else None
        def share(value: float | None) -> str:
            return "–" if value is None else f"{100 * value:.1f} %"

        body.append(("event recall@k (any answer-bearing frame)",
                     [share(r.recall) if r else "–" for r in recalls.values()]))
        body.append(("every event found", [share(r.all_events_recall) if r else "–" for r in recalls.values()]))
        body.append(("answer-bearing frames selected (mean)",
                     ["–" if not r or r.mean_hits is None else f"{r.mean_hits:.2f}" for r in recalls.values()]))
        body.append(("questions with ground truth", [str(r.n) if r else "0" for r in recalls.values()]))
    lines = "".join(f"<tr><th>{_e(label)}</th>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>"
                    for label, cells in body)
    return (f'<table class="summary"><thead><tr><th></th>{_selector_head(selectors, colours)}</tr></thead>'
            f"<tbody>{lines}</tbody></table>")


def _scores_table(scores: Mapping) -> str:
    """The benchmark's own breakdown from ``scores.json`` (``scoring.comparison_rows``)."""
    try:
        header, rows = comparison_rows(scores)
    except (KeyError, TypeError, ValueError) as err:
        log.warning("scores.json: breakdown left out of the report (%s: %s)", type(err).__name__, err)
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (f"<h3>{_e(header[0])}: accuracy % (questions scored)</h3>"
            f'<table class="benchmark"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _answer_cell(pick: Pick | None, hits: int | None) -> str:
    if pick is None:
        return "<td>·</td>"
    parts = []
    for setting, (letter, ok) in sorted(pick.answers.items()):
        mark = "✓" if ok else "✗"
        label = f'{_e(letter or "–")}{" sub" if setting else ""} {mark}'
        parts.append(f'<span class="{"ok" if ok else "wrong"}">{label}</span>')
    if hits is not None:
        parts.append(f"{hits} hit{'s' if hits != 1 else ''}")
    return f"<td>{' · '.join(parts) or f'{len(pick.indices)} frames'}</td>"


def _index_table(shown: Sequence[QuestionRow], selectors: Sequence[str], colours: Mapping[str, str],
                 ids: Mapping[str, str], truth: Mapping | None) -> str:
    """One line per question shown: its link, each selector's answer (✓/✗) and answer-bearing frames hit."""
    lines = []
    for n, row in enumerate(shown, 1):
        hit_set = set(truth[row.sample_id].grid_hits) if truth and row.sample_id in truth else None
        cells = "".join(_answer_cell(row.picks.get(s), None if hit_set is None or s not in row.picks
                                     else len(hit_set & set(row.picks[s].indices))) for s in selectors)
        lines.append(f'<tr><td>{n}. <a href="#{ids[row.sample_id]}">{_e(row.sample_id)}</a></td>{cells}</tr>')
    return (f'<details open><summary>Questions</summary><table class="index"><thead><tr><th>question</th>'
            f'{_selector_head(selectors, colours)}</tr></thead><tbody>{"".join(lines)}</tbody></table></details>')


def _options_html(question: Any, answer_index: int | None, row: QuestionRow, selectors: Sequence[str],
                  colours: Mapping[str, str]) -> str:
    """The options with the answer and every selector's prediction marked (or a line of answers
    when the option texts are unknown)."""
    chosen: dict[int, list[str]] = {}
    unparsed = []
    for s in selectors:
        pick = row.picks.get(s)
        for setting, (letter, _) in sorted((pick.answers if pick else {}).items()):
            tag = (f'<span class="pred" data-selector="{_e(s)}" style="--c:{colours[s]}">'
                   f'{_e(s)}{" +sub" if setting else ""}</span>')
            try:
                index = prediction_index(letter)
            except ValueError:
                index = None
            (unparsed if index is None else chosen.setdefault(index, [])).append(tag)
    options = tuple(getattr(question, "options", ()) or ())
    if options:
        items = "".join(f'<li{ANSWER_CLASS if i == answer_index else ""}>{_e(o)}{"".join(chosen.get(i, []))}</li>'
                        for i, o in enumerate(options))
        out = f'<ol class="options" type="A">{items}</ol>'
    elif chosen or answer_index is not None:
        letters = [f"{option_letter(i)}{''.join(tags)}" for i, tags in sorted(chosen.items())]
        answer = "–" if answer_index is None else option_letter(answer_index)
        out = f'<p class="answers">answer: <b>{answer}</b>; predicted: {", ".join(letters) or "–"}</p>'
    else:
        out = ""
    if unparsed:
        out += f'<p class="note">no parsable answer: {"".join(unparsed)}</p>'
    return out


def _truth_spans(truth: Any, timestamps: np.ndarray | None, n: int) -> tuple[list[tuple[float, float]], set[int]]:
    """Answer-bearing events as spans in frame-index units (seconds mapped through the grid's
    timestamps, else the events' grid frames ± 0.5), and the set of answer-bearing grid frames."""
    if truth is None:
        return [], set()
    if timestamps is None or len(timestamps) != n:
        timestamps = segment_centre_timestamps(0.0, truth.duration_s, n) if n == truth.grid_n else None
    spans = []
    for event in truth.events:
        if timestamps is not None:
            spans.append((float(np.interp(event.start_s, timestamps, np.arange(n))),
                          float(np.interp(event.end_s, timestamps, np.arange(n)))))
        elif event.grid_hits:
            spans.append((min(event.grid_hits) - 0.5, max(event.grid_hits) + 0.5))
    return spans, set(truth.grid_hits)


def _frames_of(cache: Any, video_id: str,
               n_hint: int | None) -> tuple[int | None, np.ndarray | None, list[bytes] | None, str | None]:
    """(N, timestamps, JPEG bytes of all N frames, why there are no thumbnails) of a video in the cache."""
    try:
        timestamps = np.asarray(cache.timestamps(video_id), dtype=np.float64)
    except KeyError as err:  # not in the cache, or failed extraction: N as the cache's config says
        frames = cache.config.get("frames")
        n = max(n_hint or 0, frames if isinstance(frames, int) else 0)
        return n, None, None, str(err.args[0]) if err.args else f"video {video_id} is not in the cache"
    n = len(timestamps)
    try:
        return n, timestamps, cache.frames(video_id, range(n)), None
    except CacheError as err:
        return n, timestamps, None, str(err)


def _question_section(number: int, row: QuestionRow, section_id: str, selectors: Sequence[str],
                      colours: Mapping[str, str], cache: Any, question: Any, truth: Any,
                      thumb_height: int, thumb_format: str) -> str:
    """One question: text, options, frame strip with selections and truth, score plot."""
    here = [s for s in selectors if s in row.picks]
    picks = {s: row.picks[s] for s in here}
    n_hint = max([len(p.scores) for p in picks.values() if p.scores is not None]
                 + [max(p.indices) + 1 for p in picks.values()])
    n, timestamps, jpegs, why = _frames_of(cache, row.video_id, n_hint)
    for s, p in picks.items():
        if max(p.indices) >= n:
            raise ReportError(f"{s} selected frame {max(p.indices)} of question {row.sample_id}, "
                              f"but its video has {n} frames in the cache")
        if p.scores is not None and len(p.scores) != n:
            raise ReportError(f"{s} scored {len(p.scores)} frames of question {row.sample_id}, "
                              f"but its video has {n} frames in the cache")
    thumbs = thumbnails(jpegs, thumb_height, thumb_format) if jpegs is not None else None
    answer_index = getattr(question, "answer_index", None)
    if answer_index is None:
        answer_index = row.answer_index if row.answer_index is not None else getattr(truth, "answer_index", None)
    spans, hits = _truth_spans(truth, timestamps, n)

    chosen_by: dict[int, list[str]] = {}
    for s, p in picks.items():
        for i in p.indices:
            chosen_by.setdefault(i, []).append(s)
    frames = []
    for i in range(n):
        by = chosen_by.get(i, [])
        classes = "frame" + (" picked" if by else "") + (" truth" if i in hits else "")
        tip = [f"frame {i}"]
        if timestamps is not None and i < len(timestamps):
            tip.append(f"{timestamps[i]:.2f} s")
        tip += [f"{s} s_i={p.scores[i]:.3g}" for s, p in picks.items() if p.scores is not None and i < len(p.scores)]
        if by:
            tip.append("selected by " + ", ".join(by))
        style = f' style="--c:{colours[by[0]]}"' if len(by) == 1 else ""
        image = (f'<img src="{thumbs[i]}" alt="frame {i}" height="{thumb_height}">' if thumbs and thumbs[i]
                 else f'<span class="missing" style="height:{thumb_height}px">{i}</span>')
        marks = ""
        if by:
            marks = '<span class="marks">' + "".join(
                f'<i class="selected" data-selector="{_e(s)}" style="--c:{colours[s]}"></i>' if s in by else "<i></i>"
                for s in here) + "</span>"
        tip_text = _e(" · ".join(tip))
        frames.append(f'<li class="{classes}" data-frame="{i}"{style} title="{tip_text}">{image}{marks}</li>')

    text = getattr(question, "question", None)
    parts = [f'<section class="question" id="{section_id}" data-sample-id="{_e(row.sample_id)}" '
             f'data-video-id="{_e(row.video_id)}">',
             f'<h2><a href="#{section_id}">{number}. {_e(row.sample_id)}</a></h2>']
    span_s = f", {timestamps[0]:.1f}–{timestamps[-1]:.1f} s" if timestamps is not None and len(timestamps) else ""
    parts.append(f'<p class="meta">video {_e(row.video_id)}: {n} frames{span_s}</p>')
    parts.append(f'<p class="question-text">{_e(text)}</p>' if text
                 else '<p class="question-text note">(question text not in the inputs)</p>')
    parts.append(_options_html(question, answer_index, row, here, colours))
    if why is not None:
        parts.append(f'<p class="note">no thumbnails: {_e(why)}</p>')
    if truth is not None:
        found = ", ".join(f"{s} {len(hits & set(p.indices))}" for s, p in picks.items())
        frames_text = ", ".join(map(str, sorted(hits))) or "none on the grid"
        parts.append(f'<p class="note">answer-bearing frames (shaded): {frames_text}'
                     f"; selected among them: {_e(found)}</p>")
    parts.append(f'<ol class="strip" aria-label="{n} frames">{"".join(frames)}</ol>')
    plot = score_plot(n, picks, colours, timestamps, spans, f"{section_id}-")
    if plot is not None:
        parts.append(f'<figure class="scores">{plot}<figcaption class="note">selection scores s_i (Eq. 9) over '
                     "the frame grid; dots: the selected frames; ticks: selectors without scores"
                     "</figcaption></figure>")
    parts.append("</section>")
    return "\n".join(parts)


def _training_section(run: RunLog) -> str:
    parts = [f'<section id="training"><h2>Training: {_e(run.name)}</h2>',
             f'<p class="meta">{len(run.metrics)} optimiser steps in metrics.jsonl'
             + (f", {sum(bool(m.get('skipped')) for m in run.metrics)} skipped (loss or gradient not finite)"
                if any(m.get("skipped") for m in run.metrics) else "") + "</p>"]
    plot = training_plot(run.metrics, "training-") if run.metrics else None
    if plot is not None:
        parts.append(f'<figure class="training">{plot}</figure>')
    if run.config is not None:
        config = _e(json.dumps(run.config, indent=2))
        parts.append(f"<details><summary>config.json</summary><pre>{config}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def render_report(
    out_html: str | Path,
    cache: Any,
    *,
    selections: Sequence[Mapping] | None = None,
    predictions: Sequence[Mapping] | None = None,
    questions: Mapping[str, Any] | None = None,
    truth: Mapping[str, Any] | None = None,
    run: RunLog | None = None,
    scores: Mapping | None = None,
    title: str = "hfs report",
    sources: Sequence[str] = (),
    max_questions: int = DEFAULT_MAX_QUESTIONS,
    thumb_height: int = 48,
    thumb_format: str = "webp",
) -> ReportSummary:
    """Write the report page to ``out_html`` (temporary name, then renamed).

    ``cache``: a ``FeatureCache`` or its folder (thumbnails, timestamps, N).
    ``selections``: ``hfs select`` records; ``predictions``: ``hfs evaluate`` records (both may
    be given; a selector is a column, a question a section, in order of first appearance).
    ``questions``: sample_id → anything with ``question``, ``options``, ``answer_index``
    (``QASample``, ``Question``) or such a tuple; questions it lacks show the ground truth's
    text, else none. ``truth``: sample_id → ``QuestionTruth`` of the synthetic task (recall columns,
    shaded spans). ``run``: a training run's curves. ``scores``: ``scores.json`` of
    ``hfs evaluate`` (the benchmark's breakdown). ``sources``: input files named under the
    title. Only the first ``max_questions`` questions get a section.
    Raises ReportError for records it cannot use.
    """
    if max_questions < 0:
        raise ReportError(f"max_questions must be >= 0, got {max_questions}")
    if thumb_height < 8:
        raise ReportError(f"thumbnails must be at least 8 pixels high, got {thumb_height}")
    fmt = check_thumb_format(thumb_format)
    selectors, rows = collect_rows(selections or [], predictions or [])
    if not rows:
        raise ReportError("nothing to report: no selection or prediction records")
    if not isinstance(cache, FeatureCache):
        cache = FeatureCache(cache)
    colours = selector_colours(selectors)
    questions = {sid: as_question(q) for sid, q in (questions or {}).items()}
    truth = truth or {}
    shown = list(rows.values())[:max_questions]
    ids = section_ids(r.sample_id for r in shown)

    head = (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<link rel="icon" href="data:,">\n<title>{_e(title)}</title>\n'
            f"<style>{CSS % {'truth': TRUTH_COLOUR}}</style>\n</head>\n<body>\n")
    meta = [f"{len(rows)} questions, {len(selectors)} selector{'s' if len(selectors) != 1 else ''}",
            f"cache {_e(cache.path)}"] + [_e(s) for s in sources]
    body = [f"<header><h1>{_e(title)}</h1><p class=\"meta\">{' · '.join(meta)}</p></header>", "<main>",
            '<section id="summary"><h2>Selectors side by side</h2>',
            _summary_table(selectors, colours, rows, truth)]
    if scores:
        body.append(_scores_table(scores))
    if len(shown) < len(rows):
        body.append(f'<p class="note cap">Showing the first {len(shown)} of {len(rows)} questions '
                    f"(max_questions = {max_questions}); the tables above count all {len(rows)}.</p>")
    if shown:
        body.append(_index_table(shown, selectors, colours, ids, truth))
    body.append("</section>")
    if run is not None:
        body.append(_training_section(run))
    for number, row in enumerate(shown, 1):
        question = questions.get(row.sample_id, truth.get(row.sample_id))
        body.append(_question_section(number, row, ids[row.sample_id], selectors, colours, cache, question,
                                      truth.get(row.sample_id), thumb_height, fmt))
    body.append("</main>\n</body>\n</html>\n")
    data = (head + "\n".join(body)).encode("utf-8")
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_html, data)
    log.info("report: %d of %d questions, %d selectors, %.1f MB → %s",
             len(shown), len(rows), len(selectors), len(data) / 1e6, out_html)
    return ReportSummary(out_html, len(data), len(shown), len(rows), tuple(selectors))


def write_evaluation_report(results_dir: str | Path, cache: Any, data: Any, truth: Any = None, run: Any = None,
                            max_questions: int = DEFAULT_MAX_QUESTIONS) -> ReportSummary:
    """``results_dir/report.html`` from what ``hfs evaluate`` wrote there (``predictions.jsonl``,
    ``scores.json`` when present); the question texts from ``data`` (a ``BenchmarkData``).

    ``truth``: the synthetic task's ground truth (sample_id → ``QuestionTruth``, or the path of
    its ``ground_truth.jsonl``). ``run``: the run the evaluation used (a run folder, checkpoint
    or saved model); its training curves are added when its ``metrics.jsonl`` is found, else
    left out (logged). Raises ReportError for inputs it cannot use. Under torchrun, the
    first process calls it, after merging the predictions.
    """
    results_dir = Path(results_dir)
    predictions = read_predictions(results_dir / "predictions.jsonl")
    scores = None
    if (results_dir / "scores.json").is_file():
        try:
            scores = json.loads((results_dir / "scores.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ReportError(f"{results_dir / 'scores.json'}: not valid JSON ({err})") from None
    if isinstance(truth, (str, Path)):
        try:
            truth = read_ground_truth(truth)
        except TruthError as err:
            raise ReportError(str(err)) from None
    run_log = None
    if run is not None:
        if find_run_folder(run) is None:
            log.info("report: %s has no %s nearby; no training curves", run, METRICS_FILE)
        else:
            run_log = read_run(run)
    try:
        name = get_benchmark(data.benchmark).title
    except KeyError:
        name = data.benchmark
    return render_report(
        results_dir / REPORT_FILE, cache, predictions=predictions, questions={s.sample_id: s for s in data.samples},
        truth=truth, run=run_log, scores=scores, title=f"{name}: frame selectors compared",
        sources=[f"{data.view} view of {data.data_dir}", str(results_dir / "predictions.jsonl")],
        max_questions=max_questions,
    )
