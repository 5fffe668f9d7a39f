"""Exact, GOP-aware frame decoding (DESIGN.md, Stage 1, step 3 "Decode").

Timeline: every time here is in **seconds relative to the video's first frame**
(the stream's start time is subtracted), unless a name says `ticks` (integer
pts in the stream's time base) or it is `VideoInfo.start_time` itself.

Semantics: the frame for target time t is the frame *shown* at t, i.e. the last
frame with pts <= t (the first frame if t precedes it, the last frame if t is
past the end). Frames are exact, never the nearest keyframe. They are yielded
in time order, each distinct frame once, carrying the indices of all targets
it serves; with fewer frames than targets, several targets share one frame
("repeat the nearest frames").

Strategy (PyAV backend): a demux-only pass gives every packet's pts and the
keyframes. For each target, when a keyframe lies after the decoder's current
position and at or before the target (and skipping to it saves at least
MIN_SKIP_FRAMES frames), seek to it; otherwise decode forward. Once the
packet of the last frame needed before a seek is sent, the decoder is
drained rather than fed more packets. Non-reference frames nobody needs may
be dropped, and only frames that serve a target are converted to RGB.
The ffmpeg binary decodes the same targets and is the fallback for files
PyAV cannot open or decode.

The parts, one job each:

    records.py   VideoInfo, DecodedFrame, DecodeResult, DecodeError, check_file
    timeline.py  segment-centre targets, the window, seconds <-> ticks, the frame shown at t
    geometry.py  display rotation and size
    index.py     the packet index: one demux pass -> VideoInfo (the probe)
    plan.py      the seek/drain plan, a pure function of frame, keyframe and target ticks
    assign.py    hands decoded frames to targets; the last frame and truncation
    pyav.py      the PyAV backend: opens the file and carries out the plan
    ffmpeg.py    the ffmpeg binary: probe and decode, the fallback
    __init__     the entry points `probe`, `iter_frames`, `decode_frames`, and
                 `_with_fallback`, the one path from PyAV to the ffmpeg binary

The entry points reach PyAV through this module's names `_open_pyav` (the
probe) and `_iter_pyav` (decoding), so a test makes PyAV fail by replacing them here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import numpy as np

from hfs.pipeline.decode import ffmpeg
from hfs.pipeline.decode.assign import KNOWN_NONE
from hfs.pipeline.decode.geometry import apply_rotation, normalise_rotation, scaled_size
from hfs.pipeline.decode.index import info_from_index, probe_container, seek_offset
from hfs.pipeline.decode.plan import MIN_SKIP_FRAMES, Step, plan_decode
from hfs.pipeline.decode.pyav import SKIP_NONREF_CODECS
from hfs.pipeline.decode.pyav import iter_frames as _iter_pyav
from hfs.pipeline.decode.pyav import open_container as _open_pyav
from hfs.pipeline.decode.records import DecodedFrame, DecodeError, DecodeResult, VideoInfo, check_file
from hfs.pipeline.decode.timeline import segment_centre_timestamps, target_ticks, wanted_ticks, window

# The tests and benchmarks/bench_decode.py reach for these (to count seeks, or to force a strategy).
from hfs.pipeline.decode.assign import Assigner as _Assigner
from hfs.pipeline.decode.pyav import PyAVDecoder as _PyAVDecoder

__all__ = [
    "BACKENDS", "DecodeError", "VideoInfo", "DecodedFrame", "DecodeResult", "Step",
    "probe", "iter_frames", "decode_frames", "segment_centre_timestamps", "plan_decode",
    "apply_rotation", "normalise_rotation", "scaled_size", "check_file", "info_from_index", "seek_offset",
    "target_ticks", "wanted_ticks", "KNOWN_NONE", "MIN_SKIP_FRAMES", "SKIP_NONREF_CODECS",
]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "pyav", "ffmpeg")

T = TypeVar("T")


def probe(path: str | Path) -> VideoInfo:
    """Probe with PyAV (one demux pass, first frame decoded for its rotation).

    Falls back to the ffmpeg binary when PyAV cannot open the file. Raises
    DecodeError with a one-line reason.
    """
    path = check_file(path)
    return _with_fallback(path, "auto", lambda backend: _probe(backend, path))[1]


def iter_frames(
    path: str | Path,
    timestamps: Sequence[float],
    backend: str = "auto",
    max_side: int | None = None,
    info: VideoInfo | None = None,
    threads: int | None = None,
) -> Iterator[DecodedFrame]:
    """Decode the frame shown at each of `timestamps` (seconds from the first frame).

    Yields DecodedFrame in time order, each distinct frame once with the
    indices of the targets it serves. `backend` is "auto" (PyAV, falling back
    to the ffmpeg binary when PyAV cannot open or decode the file), "pyav" or
    "ffmpeg". `max_side` shrinks frames whose longer side exceeds it, in the
    decoder's own conversion to RGB. `info`, a PyAV `probe` of the same file,
    saves probing it again. `threads`: FFmpeg's decoding (and conversion)
    threads; None lets FFmpeg use one per core, which oversubscribes a
    machine running one decoding process per core.
    Raises DecodeError with a one-line reason.
    """
    path = check_file(path)
    times = np.asarray(timestamps, dtype=np.float64)
    if times.ndim != 1 or not len(times):
        raise ValueError("timestamps must be a non-empty 1-D sequence of seconds")
    _check_backend(backend)
    _, (_, frames) = _with_fallback(
        path, backend, lambda b: _start(b, path, times, info if b == "pyav" else None, max_side, threads)
    )
    yield from frames


def decode_frames(
    path: str | Path,
    n: int = 128,
    start: float | None = None,
    end: float | None = None,
    backend: str = "auto",
    max_side: int | None = None,
    threads: int | None = None,
) -> DecodeResult:
    """The n frames shown at the segment centres of [start or 0, min(end, duration)].

    Times are seconds from the first frame. Videos with fewer than n frames in
    the window repeat the nearest frames; `DecodeResult.distinct` says how many
    were distinct. `max_side` and `threads` as in `iter_frames`. Raises
    DecodeError with a one-line reason.
    """
    t0 = time.perf_counter()
    path = check_file(path)
    _check_backend(backend)
    probed_by, info = _with_fallback(path, backend, lambda b: _probe(b, path))
    timestamps = segment_centre_timestamps(*window(info, start, end), n)
    if probed_by == "ffmpeg":
        backend = "ffmpeg"  # PyAV could not even probe it
    name, (info, frames) = _with_fallback(
        path, backend, lambda b: _start(b, path, timestamps, info if b == probed_by else None, max_side, threads)
    )
    return _collect(frames, timestamps, info, name, t0)


# --------------------------------------------------------------------------
# The one fallback path, and one backend at a time
# --------------------------------------------------------------------------


def _with_fallback(path: Path, backend: str, attempt: Callable[[str], T]) -> tuple[str, T]:
    """(backend that succeeded, `attempt(backend)`); "auto" is PyAV, then the ffmpeg binary.

    The ffmpeg binary is tried when PyAV fails with a DecodeError that is not
    permanent (one no backend can fix); when it fails too, the error names
    both reasons.
    """
    if backend != "auto":
        return backend, attempt(backend)
    try:
        return "pyav", attempt("pyav")
    except DecodeError as err:
        if err.permanent:
            raise
        log.warning("PyAV failed on %s (%s); falling back to the ffmpeg binary", path, err)
        try:
            return "ffmpeg", attempt("ffmpeg")
        except DecodeError as ff_err:
            raise _combined(err, ff_err) from ff_err


def _combined(first: DecodeError, second: DecodeError) -> DecodeError:
    """One DecodeError naming both backends' reasons (once if they agree)."""
    if first.reason == second.reason:
        return first
    return DecodeError(f"{first.reason} (ffmpeg: {second.reason})", permanent=first.permanent)


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")


def _probe(backend: str, path: Path) -> VideoInfo:
    """Probe `path` with one backend ("pyav" or "ffmpeg"), no fallback."""
    if backend == "ffmpeg":
        return ffmpeg.probe(path)
    container, stream = _open_pyav(path, threaded=False)
    try:
        return probe_container(container, stream)
    finally:
        container.close()


def _start(
    backend: str, path: Path, timestamps: np.ndarray, info: VideoInfo | None, max_side: int | None,
    threads: int | None = None,
) -> tuple[VideoInfo, Iterator[DecodedFrame]]:
    """Decode with one backend up to the first frame, where most failures show.

    `info` is this backend's probe of `path` (probed here when None).
    Returns the probe and the frames, each stamped with the backend.
    """
    info = info or _probe(backend, path)
    if backend == "pyav":
        frames = _iter_pyav(path, timestamps, info, max_side, threads=threads)
    else:
        frames = ffmpeg.iter_frames(path, timestamps, info, max_side, threads=threads)
    first = next(frames, None)
    if first is None:
        raise DecodeError("no decodable video frames")
    return info, _stamped(backend, first, frames)


def _stamped(backend: str, first: DecodedFrame, rest: Iterator[DecodedFrame]) -> Iterator[DecodedFrame]:
    """`first` followed by `rest`, each stamped with the backend that decoded it."""
    first.backend = backend
    yield first
    for frame in rest:
        frame.backend = backend
        yield frame


def _collect(frames: Iterator[DecodedFrame], timestamps: np.ndarray, info: VideoInfo, backend: str, t0: float) -> DecodeResult:
    """Gather DecodedFrames into a per-target DecodeResult."""
    n = len(timestamps)
    per_target: list[np.ndarray | None] = [None] * n
    pts = np.full(n, np.nan)
    frame_ids = np.full(n, -1, dtype=np.int64)
    distinct = truncated = 0
    for frame in frames:
        for i in frame.targets:
            per_target[i], pts[i], frame_ids[i] = frame.rgb, frame.pts, distinct
        truncated += len(frame.truncated)
        distinct += 1
    missing = [i for i, f in enumerate(per_target) if f is None]
    if missing:
        raise DecodeError(f"decoder returned no frame for {len(missing)} of {n} targets")
    if truncated:
        log.warning("video is truncated: %d of %d targets got the last decodable frame", truncated, n)
    return DecodeResult(
        frames=per_target,  # type: ignore[arg-type]
        timestamps=timestamps,
        pts=pts,
        frame_ids=frame_ids,
        distinct=distinct,
        truncated=truncated,
        info=info,
        decode_s=time.perf_counter() - t0,
        backend=backend,
    )
