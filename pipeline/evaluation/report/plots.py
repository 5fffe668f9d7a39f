"""Thumbnails (base64 data URIs) and matplotlib plots inlined as SVG: score curves and training curves.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)



TRUTH_COLOUR = "#f2c200"

# metrics.jsonl keys plotted, in this order, with the paper's symbol (Eq. 21 and its terms)
TRAINING_PANELS = (
    ("total", "L (Eq. 21)"), ("ce", "CE (Eq. 17)"), ("kl", "KL(p_t ‖ p_s) (Eq. 20)"),
    ("set_objective", "F(m) (Eq. 15)"), ("relevance", "Rel (Eq. 11)"), ("coverage", "Cov (Eq. 12)"),
    ("redundancy", "Red (Eq. 14)"), ("sep", "L_sep (Eq. 6)"), ("tau", "τ (Gumbel-TopK)"),
    ("lambda_kl", "λ_KL"), ("lr", "learning rate"), ("grad_norm", "gradient norm"),
)
from hfs.pipeline.evaluation.report.inputs import ReportError
from hfs.pipeline.evaluation.report.rows import Pick

MAX_CURVE_POINTS = 800  # longer runs are plotted as bin means with a min-max band




def thumbnails(jpegs: Sequence[bytes], height: int, fmt: str) -> list[str | None]:
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


def check_thumb_format(fmt: str) -> str:
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


def score_plot(n: int, picks: Mapping[str, Pick], colours: Mapping[str, str], timestamps: np.ndarray | None,
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


def training_plot(metrics: Sequence[Mapping], prefix: str) -> str | None:
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


