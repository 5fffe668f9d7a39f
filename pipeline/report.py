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

import base64
import html
import io
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "Question",
    "ReportError",
    "ReportSummary",
    "RunLog",
    "find_run_folder",
    "read_predictions",
    "read_run",
    "read_selection_files",
    "read_selections",
    "read_truth",
    "render_report",
    "write_evaluation_report",
]

DEFAULT_MAX_QUESTIONS = 50
REPORT_FILE = "report.html"
METRICS_FILE = "metrics.jsonl"  # stages/train.py writes these two into a run folder
RUN_CONFIG_FILE = "config.json"

SELECTION_FIELDS = ("sample_id", "video_id", "selector", "indices")
PREDICTION_FIELDS = SELECTION_FIELDS + ("prediction", "correct")

# One colour per selector, the same in every report; others take the rest of tab10 in turn.
KNOWN_COLOURS = {"hfs": "#1f77b4", "clip": "#ff7f0e", "hfs-set": "#2ca02c", "uniform": "#7f7f7f",
                 "random": "#8c564b"}
OTHER_COLOURS = ("#9467bd", "#e377c2", "#17becf", "#d62728", "#bcbd22")
TRUTH_COLOUR = "#f2c200"
ANSWER_CLASS = ' class="answer"'

# metrics.jsonl keys plotted, in this order, with the paper's symbol (Eq. 21 and its terms)
TRAINING_PANELS = (
    ("total", "L (Eq. 21)"), ("ce", "CE (Eq. 17)"), ("kl", "KL(p_t ‖ p_s) (Eq. 20)"),
    ("set_objective", "F(m) (Eq. 15)"), ("relevance", "Rel (Eq. 11)"), ("coverage", "Cov (Eq. 12)"),
    ("redundancy", "Red (Eq. 14)"), ("sep", "L_sep (Eq. 6)"), ("tau", "τ (Gumbel-TopK)"),
    ("lambda_kl", "λ_KL"), ("lr", "learning rate"), ("grad_norm", "gradient norm"),
)
MAX_CURVE_POINTS = 800  # longer runs are plotted as bin means with a min-max band


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


@dataclass(frozen=True)
class ReportSummary:
    """What ``render_report`` wrote: the file, its size, questions shown of all, the selectors."""

    path: Path
    bytes: int
    questions_shown: int
    questions_total: int
    selectors: tuple[str, ...]


# ---------------------------------------------------------------------------
# Reading the inputs


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


def _check_record(record: Mapping, where: str, required: Sequence[str]) -> None:
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
    scores = _scores_of(record)
    if scores is not None and (not isinstance(scores, list)
                               or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores)):
        raise ReportError(f"{where}: scores must be a list of numbers or null")
    if scores is not None and max(indices) >= len(scores):
        raise ReportError(f"{where}: index {max(indices)} is past the {len(scores)} frame scores")
    if "correct" in record and not isinstance(record["correct"], bool):
        raise ReportError(f"{where}: 'correct' must be true or false, got {record['correct']!r}")


def _scores_of(record: Mapping) -> Any:
    """s_i of every frame: ``scores`` (``hfs select``) or ``frame_scores`` (``hfs evaluate``)."""
    return record.get("scores", record.get("frame_scores"))


def _read_records(path: str | Path, what: str, fields) -> list[dict]:
    records = []
    for number, record in _read_jsonl(path, what):
        _check_record(record, f"{path}:{number}", fields)
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


def read_truth(path: str | Path) -> dict:
    """The synthetic task's ``ground_truth.jsonl`` as sample_id → ``QuestionTruth`` (ReportError naming file:line)."""
    from hfs.pipeline.synthetic_task import QuestionTruth

    truths = {}
    for number, record in _read_jsonl(path, "a synthetic task's ground_truth.jsonl"):
        try:
            truth = QuestionTruth.from_json(record)
        except (KeyError, TypeError, ValueError) as err:
            raise ReportError(f"{path}:{number}: not a ground-truth line ({type(err).__name__}: {err})") from None
        truths[truth.sample_id] = truth
    return truths


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


# ---------------------------------------------------------------------------
# Records -> what the page shows


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


def _collect(selections: Sequence[Mapping], predictions: Sequence[Mapping]) -> tuple[list[str], dict[str, QuestionRow]]:
    """Selectors in order of appearance and one QuestionRow per question (in order of appearance).

    A (selector, question) may occur several times (a selection file and predictions, or both
    subtitle settings) when its frames agree; different frames are a ReportError.
    """
    selectors: list[str] = []
    rows: dict[str, QuestionRow] = {}
    tagged = [(r, f"selection record {i}", SELECTION_FIELDS) for i, r in enumerate(selections)]
    tagged += [(r, f"prediction record {i}", PREDICTION_FIELDS) for i, r in enumerate(predictions)]
    for record, where, required in tagged:
        _check_record(record, where, required)
        sid, selector = record["sample_id"], record["selector"]
        row = rows.setdefault(sid, QuestionRow(sid, record["video_id"]))
        if row.video_id != record["video_id"]:
            raise ReportError(f"{where}: question {sid} is on video {record['video_id']}, elsewhere on {row.video_id}")
        if selector not in selectors:
            selectors.append(selector)
        indices = [int(i) for i in record["indices"]]
        pick = row.picks.get(selector)
        if pick is None:
            pick = row.picks[selector] = Pick(indices, _scores_of(record))
        elif sorted(pick.indices) != sorted(indices):
            raise ReportError(f"{where}: {selector} selected other frames for {sid} in another record "
                              f"({sorted(indices)} vs {sorted(pick.indices)})")
        elif pick.scores is None:
            pick.scores = _scores_of(record)
        if "prediction" in record:
            pick.answers[bool(record.get("subtitles", False))] = (record["prediction"], record["correct"])
        if record.get("answer_index") is not None:
            row.answer_index = record["answer_index"]
    return selectors, rows


def _as_question(value: Any) -> Any:
    """``QASample``, ``QuestionTruth`` and ``Question`` as they are; a plain (question, options,
    answer_index) tuple as a ``Question``."""
    if hasattr(value, "question"):
        return value
    if isinstance(value, (tuple, list)) and 1 <= len(value) <= 3:
        return Question(str(value[0]), tuple(value[1]) if len(value) > 1 else (), value[2] if len(value) > 2 else None)
    raise ReportError(f"a question must have question, options and answer_index, got {value!r}")


def _colours(selectors: Sequence[str]) -> dict[str, str]:
    others = iter(OTHER_COLOURS * (len(selectors) // len(OTHER_COLOURS) + 1))
    return {s: KNOWN_COLOURS.get(s) or next(others) for s in selectors}


def _section_ids(sample_ids: Iterable[str]) -> dict[str, str]:
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


# ---------------------------------------------------------------------------
# Thumbnails and plots


def _thumbnails(jpegs: Sequence[bytes], height: int, fmt: str) -> list[str | None]:
    """Data URIs of the frames scaled to ``height`` pixels (aspect kept), as WebP or JPEG; None
    for a frame PIL cannot read (logged)."""
    from PIL import Image

    out: list[str | None] = []
    for j, data in enumerate(jpegs):
        try:
            with Image.open(io.BytesIO(data)) as im:
                width = max(1, round(im.width * height / max(im.height, 1)))
                im.draft("RGB", (2 * width, 2 * height))  # JPEG: decode at reduced scale, at least twice the target
                small = im.convert("RGB").resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
        except (OSError, ValueError) as err:
            log.warning("frame %d: not a readable image (%s); shown as its number", j, err)
            out.append(None)
            continue
        buf = io.BytesIO()
        if fmt == "webp":
            small.save(buf, "WEBP", quality=50, method=4)
        else:
            small.save(buf, "JPEG", quality=60, optimize=True)
        out.append(f"data:image/{fmt};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}")
    return out


def _thumb_format(fmt: str) -> str:
    fmt = fmt.lower().replace("jpg", "jpeg")
    if fmt not in ("webp", "jpeg"):
        raise ReportError(f"thumbnail format must be webp or jpeg, got {fmt!r}")
    if fmt == "webp":
        from PIL import features

        if not features.check("webp"):
            log.warning("this PIL has no WebP encoder; thumbnails are JPEG (larger page)")
            return "jpeg"
    return fmt


_SVG_REF = re.compile(r'(?:url\(#|href="#)([^")]+)')
_SVG_ID = re.compile(r'\s+id="([^"]+)"')
_SVG_PATH = re.compile(r'\bd="([^"]*)"')
_SVG_DECIMALS = re.compile(r"(\d\.\d\d)\d+")
_SVG_XY = re.compile(r'(\s[xy]="-?\d+\.\d\d)\d+')


def _short_path(match: re.Match) -> str:
    """A ``d="..."`` attribute on one line with coordinates to two decimals."""
    return 'd="' + _SVG_DECIMALS.sub(r"\1", " ".join(match.group(1).split())) + '"'


def _inline_svg(fig, prefix: str) -> str:
    """``fig`` as an ``<svg>`` element to put in HTML, made small and safe to repeat on a page.

    No XML prolog and no namespace URIs (the HTML parser supplies the namespaces); text as
    ``<text>`` in a generic sans-serif; path coordinates to 0.01 pt; the stroke style
    matplotlib puts in a global ``<style>`` is in the page's CSS instead; only the ids that
    are referenced are kept, prefixed with ``prefix`` so that no two plots share one.
    """
    import matplotlib

    buf = io.StringIO()
    rc = {"svg.hashsalt": "hfs-report", "svg.fonttype": "none", "font.family": "sans-serif",
          "font.sans-serif": ["DejaVu Sans"]}  # metrics from matplotlib's own font; the browser's sans-serif draws it
    with matplotlib.rc_context(rc):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg)
    svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)
    svg = svg.replace("'DejaVu Sans', ", "")
    svg = _SVG_PATH.sub(_short_path, svg)
    svg = _SVG_XY.sub(r"\1", svg)
    svg = re.sub(r">\s+<", "><", svg)  # indentation (text sits inside <text> elements, never between tags)
    referenced = set(_SVG_REF.findall(svg))
    svg = _SVG_ID.sub(lambda m: f' id="{prefix}{m.group(1)}"' if m.group(1) in referenced else "", svg)
    return re.sub(r'(url\(#|href="#)', rf"\g<1>{prefix}", svg)


def _linear_map(xp: np.ndarray, fp: np.ndarray):
    """x ↦ f(x), piecewise linear through (xp, fp) (increasing xp), extended past both ends with
    the end segments' slopes: a seconds axis over frame indices needs ticks outside the grid too."""
    lo = (fp[1] - fp[0]) / (xp[1] - xp[0])
    hi = (fp[-1] - fp[-2]) / (xp[-1] - xp[-2])

    def f(x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x < xp[0], fp[0] + (x - xp[0]) * lo,
                        np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * hi, np.interp(x, xp, fp)))
    return f


def _score_plot(n: int, picks: Mapping[str, Pick], colours: Mapping[str, str], timestamps: np.ndarray | None,
                spans: Sequence[tuple[float, float]], prefix: str) -> str | None:
    """The selection scores s_i over the frame grid (Eq. 9), one line per selector that scores,
    its k selected frames as dots; selectors without scores as rows of ticks below; the
    answer-bearing spans (frame-index units) shaded. None when there is nothing to draw."""
    from matplotlib.figure import Figure

    scored = [s for s, p in picks.items() if p.scores is not None]
    unscored = [s for s in picks if s not in scored]
    if not scored and not spans:
        return None
    rows = 1 + bool(unscored)
    fig = Figure(figsize=(13, 2.0 + 0.22 * len(unscored)), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [5, 0.6 + 0.5 * len(unscored)][:rows]})[:, 0]
    ax = axes[0]
    x = np.arange(n)
    scale = len(scored) > 1  # scores of different selectors live on different scales (cosines vs σ)
    for s in scored:
        y = np.asarray(picks[s].scores, dtype=np.float64)
        label = s
        if scale:
            lo, hi = np.nanmin(y), np.nanmax(y)
            y = (y - lo) / (hi - lo) if hi > lo else np.full_like(y, 0.5)
            label = f"{s} ({lo:.3g} – {hi:.3g})"
        ax.plot(x[: len(y)], y, color=colours[s], lw=1.1, label=label)
        idx = [i for i in picks[s].indices if i < len(y)]
        ax.plot(idx, y[idx], "o", ms=3.5, color=colours[s])
    ax.set_ylabel("s_i, min–max scaled" if scale else "s_i", fontsize=8)
    for j, (a, b) in enumerate(spans):
        for axis in axes:
            label = "answer-bearing" if j == 0 and axis is ax else None
            axis.axvspan(a, b, color=TRUTH_COLOUR, alpha=0.35, lw=0, label=label)
    if unscored:
        rug = axes[1]
        for j, s in enumerate(unscored):
            rug.plot(picks[s].indices, [j] * len(picks[s].indices), "|", ms=7, mew=1.6, color=colours[s])
        rug.set_yticks(range(len(unscored)), unscored, fontsize=7)
        rug.set_ylim(len(unscored) - 0.5, -0.5)
        for side in ("top", "right", "left"):
            rug.spines[side].set_visible(False)
        rug.tick_params(axis="y", length=0)
    axes[-1].set_xlabel("frame i on the N-frame grid", fontsize=8)
    ax.set_xlim(-0.5, n - 0.5)
    if timestamps is not None and len(timestamps) == n and n > 1 and np.all(np.diff(timestamps) > 0):
        ts = np.asarray(timestamps, dtype=np.float64)
        top = ax.secondary_xaxis("top", functions=(_linear_map(x, ts), _linear_map(ts, x)))
        top.set_xlabel("seconds", fontsize=8)
        top.tick_params(labelsize=7)
    for axis in axes:
        axis.tick_params(labelsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return _inline_svg(fig, prefix)


def _binned(steps: np.ndarray, values: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Bin centres, means, minima and maxima of ``values`` over ``bins`` equal runs of steps."""
    edges = np.linspace(0, len(steps), bins + 1).astype(int)
    parts = [(steps[a:b], values[a:b]) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return tuple(np.array(v) for v in zip(*[(s.mean(), y.mean(), y.min(), y.max()) for s, y in parts]))


def _training_plot(metrics: Sequence[Mapping], prefix: str) -> str | None:
    """Each loss term of Eq. 21, τ, λ_KL, lr and the gradient norm over optimiser steps, one small
    panel each (terms that are switched off, i.e. null in every line, are left out)."""
    from matplotlib.figure import Figure

    steps = np.array([m["step"] for m in metrics], dtype=np.float64)
    panels = []
    for key, title in TRAINING_PANELS:
        values = np.array([m.get(key) if isinstance(m.get(key), (int, float)) else np.nan for m in metrics],
                          dtype=np.float64)
        keep = np.isfinite(values)
        if keep.any():
            panels.append((title, steps[keep], values[keep]))
    if not panels:
        return None
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(13, 2.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (title, x, y) in zip(axes, panels):
        if len(x) > MAX_CURVE_POINTS:
            x, y, lo, hi = _binned(x, y, MAX_CURVE_POINTS // 2)
            ax.fill_between(x, lo, hi, color="#1f77b4", alpha=0.25, lw=0)
        ax.plot(x, y, color="#1f77b4", lw=1.0, marker="o" if len(x) == 1 else None, ms=3)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6.5)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        ax.yaxis.get_offset_text().set_fontsize(6.5)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-cols:]:
        ax.set_xlabel("step", fontsize=7)
    return _inline_svg(fig, prefix)


# ---------------------------------------------------------------------------
# The page


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
    from hfs.pipeline.synthetic_task import event_recall

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
    from hfs.pipeline.scoring import comparison_rows

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
    from hfs.pipeline.scoring import prediction_index

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
        letters = [f"{chr(65 + i)}{''.join(tags)}" for i, tags in sorted(chosen.items())]
        answer = "–" if answer_index is None else chr(65 + answer_index)
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
        from hfs.pipeline.synthetic_task import grid_timestamps

        timestamps = grid_timestamps(truth.duration_s, n) if n == truth.grid_n else None
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
    from hfs.cache import CacheError

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
    thumbs = _thumbnails(jpegs, thumb_height, thumb_format) if jpegs is not None else None
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
    plot = _score_plot(n, picks, colours, timestamps, spans, f"{section_id}-")
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
    plot = _training_plot(run.metrics, "training-") if run.metrics else None
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
    from hfs.cache import FeatureCache
    from hfs.cache.format import atomic_write_bytes

    if max_questions < 0:
        raise ReportError(f"max_questions must be >= 0, got {max_questions}")
    if thumb_height < 8:
        raise ReportError(f"thumbnails must be at least 8 pixels high, got {thumb_height}")
    fmt = _thumb_format(thumb_format)
    selectors, rows = _collect(selections or [], predictions or [])
    if not rows:
        raise ReportError("nothing to report: no selection or prediction records")
    if not isinstance(cache, FeatureCache):
        cache = FeatureCache(cache)
    colours = _colours(selectors)
    questions = {sid: _as_question(q) for sid, q in (questions or {}).items()}
    truth = truth or {}
    shown = list(rows.values())[:max_questions]
    ids = _section_ids(r.sample_id for r in shown)

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
        truth = read_truth(truth)
    run_log = None
    if run is not None:
        if find_run_folder(run) is None:
            log.info("report: %s has no %s nearby; no training curves", run, METRICS_FILE)
        else:
            run_log = read_run(run)
    from hfs.manifests.benchmarks import get_benchmark

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
