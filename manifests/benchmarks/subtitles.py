"""Subtitle cues: SRT (Video-MME), LongVideoBench's JSON cue forms, and the lines around selected frames.

Formats, as the published files write them:

- **SRT** (Video-MME `subtitle/{videoID}.srt`): blocks of an index line, a
  time line `HH:MM:SS,mmm --> HH:MM:SS,mmm` and text lines, separated by blank
  lines. The text is wrapped in `<font color="white" size=".72c">...</font>`;
  cues may overlap (YouTube roll-up captions). lmms-eval reads them in
  `lmms_eval/tasks/videomme/utils.py` (`load_subtitles`).
- **LongVideoBench JSON** (`subtitles/{subtitle_path}`), a list in one of two
  forms, as `insert_subtitles_into_frames` in
  github.com/longvideobench/LongVideoBench `longvideobench/longvideobench_dataset.py`
  (and lmms-eval `lmms_eval/tasks/longvideobench/utils.py`) reads them:
  `{"timestamp": [start_s, end_s], "text": ...}` (end may be null: the cue
  lasts to the end of the video; both loaders also treat an integer end as
  null, which looks unintended, so here a number is always read as seconds) or `{"start": "HH:MM:SS.mmm", "end": ...,
  "line": ...}`. Times are on the *source* video's timeline; the question's
  `starting_timestamp_for_subtitles` (seconds) is subtracted to put them on
  the clip's timeline.

The window rule (`cues_near`): a cue [start, end) is kept when it overlaps
[t - w, t + w] for at least one selected frame time t (seconds on the clip's
timeline), i.e. `start <= t + w and end > t - w`; kept cues are deduplicated
and returned in time order. With w = 0 this is exactly lmms-eval's Video-MME
rule (a cue is kept when a sampled frame falls inside it, `start <= t < end`),
so the default window is 0 s; LongVideoBench's own loader instead keeps a cue
when a frame lies strictly inside it after widening cues shorter than 1 s to
1 s, which a window of 0.5 s approximates.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 0.0  # half-width w of the window around each selected frame, seconds (see module docstring)

_SRT_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?"
_SRT_TIMING = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}")
_TAG = re.compile(r"<[^>]*>")  # <font ...>, </font>, <i>, <b>...
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\an8} positioning codes some SRT files carry


class SubtitleError(ValueError):
    """A subtitle file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Cue:
    """One subtitle cue: `start` and `end` in seconds on the clip's timeline, `text` without markup."""

    start: float
    end: float
    text: str


def clean_text(text: str) -> str:
    """Cue text without tags (`<font ...>`, `<i>`), ASS codes and entities, on one line."""
    text = _ASS_OVERRIDE.sub("", _TAG.sub("", text))
    return " ".join(html.unescape(text).split())


def _clock(h: str | None, m: str, s: str, frac: str | None) -> float:
    """Seconds of an SRT clock reading; "1,5" is 1.5 s (the fraction is decimal, not milliseconds)."""
    return int(h or 0) * 3600 + int(m) * 60 + int(s) + (int(frac) / 10 ** len(frac) if frac else 0.0)


def parse_srt(text: str) -> list[Cue]:
    """The cues of an SRT document, in file order, overlapping cues kept.

    A cue starts at a time line and takes the text lines after it up to the
    next blank line (or the next index-and-time pair, for files that leave out
    blank lines). Tags are stripped; cues left without text are dropped.
    """
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues: list[Cue] = []
    current: tuple[float, float, list[str]] | None = None

    def close():
        if current is not None:
            body = clean_text(" ".join(current[2]))
            if body:
                cues.append(Cue(current[0], max(current[0], current[1]), body))

    for i, line in enumerate(lines):
        timing = _SRT_TIMING.match(line)
        if timing:
            close()
            g = timing.groups()
            current = (_clock(*g[0:4]), _clock(*g[4:8]), [])
        elif not line.strip():
            close()
            current = None
        elif current is not None:
            is_index = line.strip().isdigit() and i + 1 < len(lines) and _SRT_TIMING.match(lines[i + 1])
            if not is_index:
                current[2].append(line)
    close()
    return cues


def _seconds(value: Any, what: str) -> float:
    """Seconds from a number or an "HH:MM:SS.mmm" / "MM:SS" clock string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{what} is not finite")
        return float(value)
    if isinstance(value, str):
        parts = value.strip().replace(",", ".").split(":")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if 1 <= len(numbers) <= 3:
            return sum(n * 60 ** k for k, n in enumerate(reversed(numbers)))
    raise ValueError(f"{what} must be seconds or a clock time, got {value!r}")


def parse_lvb_cues(data: Any, offset_s: float = 0.0, duration_s: float | None = None) -> list[Cue]:
    """Cues of a LongVideoBench subtitle file (either JSON form), on the clip's timeline.

    `offset_s` is the question's `starting_timestamp_for_subtitles`, subtracted
    from every time; a "timestamp" cue whose end is null lasts to the clip's end
    (`duration_s`, else forever). Cues that end before the clip starts are
    dropped. Raises ValueError naming the first bad cue.
    """
    if not isinstance(data, list):
        raise ValueError(f"expected a list of cues, got {type(data).__name__}")

    def open_end(end: Any, k: int) -> float:  # an open cue lasts to the clip's end (on the source timeline)
        if end is not None:
            return _seconds(end, f"cue {k} end")
        return duration_s + offset_s if duration_s is not None else math.inf

    cues = []
    for k, item in enumerate(data):
        start, end, text = _lvb_raw_cue(item, k, open_end)
        body = clean_text(text)
        start, end = start - offset_s, end - offset_s
        if body and end > 0:
            cues.append(Cue(start, max(start, end), body))
    return cues


def read_subtitle_file(path: str, offset_s: float = 0.0, duration_s: float | None = None) -> list[Cue]:
    """The cues of a subtitle file: `.srt` as SRT, `.json` as LongVideoBench cues; SubtitleError if unreadable."""
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            text = handle.read()
    except OSError as exc:
        raise SubtitleError(f"{path}: cannot read subtitles: {exc.strerror or exc}") from None
    if path.lower().endswith(".json"):
        try:
            return parse_lvb_cues(json.loads(text), offset_s, duration_s)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise SubtitleError(f"{path}: not LongVideoBench subtitle JSON: {exc}") from None
    cues = parse_srt(text)
    if offset_s:
        cues = [Cue(c.start - offset_s, c.end - offset_s, c.text) for c in cues if c.end - offset_s > 0]
    return cues


@functools.lru_cache(maxsize=64)
def _cached_cues(path: str, offset_s: float, duration_s: float | None) -> tuple[Cue, ...]:
    """`read_subtitle_file`, cached: the evaluation loop asks for the same video's cues once per question."""
    return tuple(read_subtitle_file(path, offset_s, duration_s))


def cues_near(cues: Iterable[Cue], timestamps_s: Sequence[float], window_s: float = DEFAULT_WINDOW_S) -> list[Cue]:
    """The cues overlapping [t - w, t + w] of any selected frame time t, deduplicated, in time order.

    A cue [start, end) overlaps when `start <= t + w and end > t - w`; a cue
    of zero length counts as the instant `start`. Times are seconds on the
    clip's timeline; `window_s` is w.
    """
    if window_s < 0:
        raise ValueError(f"window_s must be >= 0, got {window_s}")
    times = sorted(float(t) for t in timestamps_s)
    kept = set()
    for cue in cues:
        for t in times:
            reaches = cue.end > t - window_s or (cue.end == cue.start and cue.start >= t - window_s)
            if cue.start <= t + window_s and reaches:
                kept.add(cue)
                break
    return sorted(kept, key=lambda c: (c.start, c.end, c.text))


def lines_near(cues: Iterable[Cue], timestamps_s: Sequence[float], window_s: float = DEFAULT_WINDOW_S) -> list[str]:
    """The text of `cues_near`, one line per cue."""
    return [c.text for c in cues_near(cues, timestamps_s, window_s)]


def sample_subtitle_lines(sample, timestamps_s: Sequence[float], window_s: float = DEFAULT_WINDOW_S) -> list[str]:
    """Subtitle lines around the selected frames of one question, for the "with subtitles" prompt.

    Reads the sample's subtitle file (`meta["subtitle_path"]`, None when the
    benchmark has none for this video) with its offset (`meta["subtitle_offset_s"]`,
    seconds) and clip length (`meta["duration_s"]`), then applies `lines_near`.
    `timestamps_s` are the selected frames' times in seconds. An empty list
    means no subtitles: lmms-eval then writes "No subtitles available".
    SubtitleError when the file exists but cannot be read.
    """
    meta = sample.meta
    path = meta.get("subtitle_path")
    if not path:
        return []
    cues = _cached_cues(path, float(meta.get("subtitle_offset_s") or 0.0), meta.get("duration_s"))
    return lines_near(cues, timestamps_s, window_s)


# -- lmms-eval's Video-MME rule (``--protocol lmms-eval``) ------------------------------------------

LMMS_EVAL_SUBTITLE_FRAMES = 32
"""``frame_num`` of lmms-eval's ``videomme_w_subtitle`` task (its YAML's default model kwargs)."""

_LMMS_EVAL_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')
"""The pattern lmms-eval takes a cue's text with; a cue it does not match gives no line."""


def lmms_eval_srt_cues(text: str, what: str = "subtitle file") -> dict[tuple[float, float], str]:
    """An SRT document as lmms-eval reads it (``load_subtitles`` in lmms_eval/tasks/videomme/utils.py):
    blocks split at blank lines ("\\n\\n"), each of 3 lines or more taken as index, time line
    ("HH:MM:SS,mmm --> HH:MM:SS,mmm") and text lines joined by spaces, markup kept; keyed by
    (start, end) seconds, so a later cue with the same times replaces an earlier one in its place.
    SubtitleError (naming ``what``) where lmms-eval's own reading would raise."""
    cues: dict[tuple[float, float], str] = {}
    for section in text.split("\n\n"):
        if not section.strip():
            continue
        lines = section.split("\n")
        if len(lines) < 3:
            continue
        try:
            start, end = (_lmms_eval_srt_time(t) for t in lines[1].split(" --> "))
        except ValueError as err:
            raise SubtitleError(f"{what}: lmms-eval cannot read the time line {lines[1]!r} ({err})") from None
        cues[(start, end)] = " ".join(lines[2:])
    return cues


def _lmms_eval_srt_time(text: str) -> float:
    """``parse_subtitle_time``: "HH:MM:SS,mmm" -> seconds (the milliseconds as written / 1000)."""
    h, m, s_ms = text.split(":")
    s, ms = s_ms.split(",")
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def lmms_eval_subtitle_lines(cues: Mapping[tuple[float, float], str], fps: float, total_frames: int,
                             frame_num: int = LMMS_EVAL_SUBTITLE_FRAMES) -> list[str]:
    """The subtitle lines lmms-eval's ``videomme_doc_to_text_subtitle`` writes, whatever frames the
    model is shown: cue times become frame numbers ``int(t·fps)``; a cue is kept when one of the
    ``frame_num`` frames ``np.linspace(0, total_frames - 1, frame_num, dtype=int)`` falls in
    [start, end); kept cues come in the order of ``list(set(indices))`` (as lmms-eval, reproduced by
    doing the same), each as the first ``<font color="white" size=".72c">…</font>`` text in it
    (a cue without one gives no line)."""
    import numpy as np

    spans = [(int(start * fps), int(end * fps), text) for (start, end), text in cues.items()]
    sampled = np.linspace(0, total_frames - 1, frame_num, dtype=int).tolist()
    hits = [idx for frame in sampled for idx, span in enumerate(spans) if span[0] <= frame < span[1]]
    lines = []
    for idx in list(set(hits)):
        found = _LMMS_EVAL_FONT.findall(spans[idx][2])
        if found:
            lines.append(found[0])
    return lines


def sample_lmms_eval_subtitle_lines(sample, fps: float, total_frames: int,
                                    frame_num: int = LMMS_EVAL_SUBTITLE_FRAMES) -> list[str] | None:
    """`lmms_eval_subtitle_lines` of a Video-MME question's SRT (``meta["subtitle_path"]``), None when
    the video has no subtitle file (lmms-eval then writes "No subtitles available"). ``fps`` and
    ``total_frames``: the video's (lmms-eval asks OpenCV's CAP_PROP_FPS and CAP_PROP_FRAME_COUNT)."""
    path = sample.meta.get("subtitle_path")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise SubtitleError(f"{path}: cannot read ({err})") from err
    return lmms_eval_subtitle_lines(lmms_eval_srt_cues(text, str(path)), fps, total_frames, frame_num)


# -- LongVideoBench's interleaved rule (lmms-eval ``longvideobench_val_i``) -------------------------

LMMS_EVAL_LVB_FRAMES = 16
"""``max_num_frames`` of lmms-eval's ``longvideobench_val_i`` task (its YAML sets none; 16 is the default)."""
LMMS_EVAL_LVB_IMAGE = "<image>"
"""How ``longvideobench_doc_to_text`` writes a frame in its interleaved text."""


def lmms_eval_lvb_frame_times(duration_s: float, max_num_frames: int = LMMS_EVAL_LVB_FRAMES) -> list[float]:
    """``compute_frame_timestamps`` (lmms_eval/tasks/longvideobench/utils.py): the times, in seconds
    on the clip's timeline, its interleaving places frames at: ``max_num_frames`` evenly spaced from
    0 (``duration / n · i``), or one a second (0, 1, …, ``int(duration) - 1``) for a clip no longer
    than ``max_num_frames`` seconds."""
    if duration_s > max_num_frames:
        return [duration_s / max_num_frames * i for i in range(max_num_frames)]
    return [float(i) for i in range(int(duration_s))]


def _lvb_raw_cue(cue: Any, k: int, timestamp_end) -> tuple[float, float, str]:
    """(start, end, text) of raw LongVideoBench cue number ``k`` (either JSON form), on the source
    timeline: a "timestamp" cue's end is ``timestamp_end(raw end, k)`` (the readers differ there),
    a "start"/"end" cue's its "end". Raises ValueError naming the cue."""
    if not isinstance(cue, Mapping):
        raise ValueError(f"cue {k} is not an object")
    if "timestamp" in cue:
        span = cue.get("timestamp")
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            raise ValueError(f"cue {k}: 'timestamp' must be [start, end], got {span!r}")
        start, end = _seconds(span[0], f"cue {k} start"), timestamp_end(span[1], k)
        text = cue.get("text")
    elif "start" in cue:
        start, end = _seconds(cue.get("start"), f"cue {k} start"), _seconds(cue.get("end"), f"cue {k} end")
        text = cue.get("line")
    else:
        raise ValueError(f"cue {k} has neither 'timestamp' nor 'start'")
    if not isinstance(text, str):
        raise ValueError(f"cue {k}: the text must be a string, got {text!r}")
    return start, end, text


def _lvb_cue_span(cue: Any, offset_s: float, duration_s: float, k: int) -> tuple[float, float, str]:
    """(start, end, text) of one raw LongVideoBench cue as ``insert_subtitles_into_frames`` reads it:
    times minus ``offset_s``; a "timestamp" cue whose end is not a float (null, or an integer) ends
    at ``duration_s`` before the offset is subtracted, as the loader does; the text as written."""
    start, end, text = _lvb_raw_cue(cue, k, lambda end, _: end if isinstance(end, float) else duration_s)
    return start - offset_s, end - offset_s, text


def lvb_interleave(frame_times_s: Sequence[float], cues: Any, offset_s: float,
                   duration_s: float) -> list[int | str]:
    """LongVideoBench's interleaving of frames and subtitles, ``insert_subtitles_into_frames`` of
    github.com/longvideobench/LongVideoBench ``longvideobench_dataset.py`` as lmms-eval 0.7.3 copies
    it: frame ``i`` (an int, the index into ``frame_times_s``, which must be in time order) and cue
    texts (str), in the loader's order.

    ``cues``: the subtitle file's JSON list, raw (either form, see the module docstring). For each
    cue in the file's order: first every frame not placed yet whose time is <= the cue's midpoint
    (start + end) / 2, then the cue's text when some frame time lies strictly inside the cue, a cue
    shorter than 1 s counting as the 1 s around its midpoint; a cue no frame lies inside is left
    out. The frames after the last cue's midpoint close the list. Texts are kept as written
    (no markup cleaning, empty ones too), as the loader does. ValueError naming the first bad cue.
    The benchmark's loader places frames at their decoded times (frame index / fps); lmms-eval's
    text at ``lmms_eval_lvb_frame_times``, which is what to pass to follow lmms-eval.
    """
    if not isinstance(cues, list):
        raise ValueError(f"expected a list of cues, got {type(cues).__name__}")
    items: list[int | str] = []
    placed = 0
    for k, cue in enumerate(cues):
        start, end, text = _lvb_cue_span(cue, offset_s, duration_s, k)
        middle = (start + end) / 2
        while placed < len(frame_times_s) and frame_times_s[placed] <= middle:
            items.append(placed)
            placed += 1
        if end - start < 1:  # widened to 1 s around the midpoint
            start, end = middle - 0.5, middle + 0.5
        if any(start < t < end for t in frame_times_s):
            items.append(text)
    items.extend(range(placed, len(frame_times_s)))
    return items


def lmms_eval_lvb_prompt_prefix(items: Sequence[int | str]) -> str:
    """The interleaved text of `lvb_interleave`'s list as ``longvideobench_doc_to_text`` writes it:
    the items joined with newlines, a frame written "<image>". lmms-eval 0.7.3's Qwen2.5-VL chat
    wrapper (``lmms_eval/models/chat/qwen2_5_vl.py``, what ``--model qwen2_5_vl`` resolves to) sends
    this text as it is, after all the images (``ConfigurableMessagesTask._auto_doc_to_messages``):
    "<image>" is plain text to Qwen, not an image slot (its simple wrapper, ``--force_simple``,
    deletes the markers instead)."""
    return "\n".join(LMMS_EVAL_LVB_IMAGE if isinstance(item, int) else item for item in items)


def sample_lmms_eval_lvb_items(sample, max_num_frames: int = LMMS_EVAL_LVB_FRAMES) -> tuple[int | str, ...]:
    """`lvb_interleave` of a LongVideoBench question as lmms-eval's ``longvideobench_val_i`` makes it
    (``longvideobench_doc_to_text``): the question's subtitle file (``meta["subtitle_path"]``, JSON)
    at the task's frame times over ``meta["duration_s"]``, shifted by ``meta["subtitle_offset_s"]``.
    SubtitleError naming the question or the file where lmms-eval's own reading would fail (no
    subtitle file, no duration, a file that is not LongVideoBench subtitle JSON)."""
    meta = sample.meta
    path, duration = meta.get("subtitle_path"), meta.get("duration_s")
    if not path:
        raise SubtitleError(f"question {sample.sample_id!r}: no subtitle file (longvideobench_val_i reads one)")
    if duration is None:
        raise SubtitleError(f"question {sample.sample_id!r}: no duration (longvideobench_val_i places frames by it)")
    return _lmms_eval_lvb_items(str(path), float(duration), float(meta.get("subtitle_offset_s") or 0.0),
                                max_num_frames)


@functools.lru_cache(maxsize=64)
def _lmms_eval_lvb_items(path: str, duration: float, offset: float, max_num_frames: int) -> tuple[int | str, ...]:
    """`sample_lmms_eval_lvb_items` of one file, cached: an evaluation asks once per question and setting."""
    try:
        with open(path, encoding="utf-8") as handle:
            cues = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise SubtitleError(f"{path}: cannot read ({err})") from err
    try:
        return tuple(lvb_interleave(lmms_eval_lvb_frame_times(duration, max_num_frames), cues, offset, duration))
    except ValueError as err:
        raise SubtitleError(f"{path}: not LongVideoBench subtitle JSON: {err}") from None


def sample_lmms_eval_lvb_prefix(sample, max_num_frames: int = LMMS_EVAL_LVB_FRAMES) -> str:
    """The interleaved prefix lmms-eval's ``longvideobench_val_i`` writes for a LongVideoBench question
    (`lmms_eval_lvb_prompt_prefix` of `sample_lmms_eval_lvb_items`); SubtitleError as there."""
    return lmms_eval_lvb_prompt_prefix(sample_lmms_eval_lvb_items(sample, max_num_frames))
