"""The decoder's timeline: which times to show, and seconds as ticks of a stream's clock.

Targets are seconds from the video's first frame; a stream counts integer
ticks of its time base from its own start. The frame for target t is the
frame *shown* at t: the last frame with pts <= t (the first frame if t
precedes it, the last frame if t is past the end).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from hfs.pipeline.decode.records import DecodeError, VideoInfo


def segment_centre_timestamps(start: float, end: float, n: int) -> np.ndarray:
    """(n,) float64 seconds at the centres of n equal segments of [start, end].

    t_i = start + (i + 0.5) * (end - start) / n, the paper's uniform sampling.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if end < start:
        raise ValueError(f"end {end} precedes start {start}")
    return start + (np.arange(n, dtype=np.float64) + 0.5) * ((end - start) / n)


def window(info: VideoInfo, start: float | None, end: float | None) -> tuple[float, float]:
    """Clip [start, end] (seconds) to the video; DecodeError (permanent) when it is empty."""
    lo = 0.0 if start is None else float(start)
    hi = info.duration if end is None else min(float(end), info.duration)
    if lo < 0:
        raise DecodeError(f"window start {lo}s is negative", permanent=True)
    if lo >= info.duration:
        raise DecodeError(f"window start {lo}s is past the end of the video ({info.duration:.1f}s)", permanent=True)
    if hi <= lo:
        raise DecodeError(f"window [{lo}s, {hi}s] is empty", permanent=True)
    return lo, hi


def target_ticks(times: np.ndarray, time_base: Fraction, start_tick: int) -> np.ndarray:
    """Targets (seconds from the first frame) as int64 ticks on the stream clock.

    Floors, because the frame shown at t has pts_tick * time_base <= t; the
    1e-6-tick nudge keeps float noise (0.64 / (1/25) = 15.999...) from
    dropping a frame that starts exactly at t.
    """
    return start_tick + np.floor(np.asarray(times, dtype=np.float64) / float(time_base) + 1e-6).astype(np.int64)


def pts_ticks(pts: np.ndarray | list[float], time_base: Fraction, start_tick: int) -> np.ndarray:
    """Frame or keyframe pts (seconds from the first frame, from a probe) back to int64 ticks.

    Rounds: these seconds were computed from whole ticks, unlike a target time.
    """
    return start_tick + np.round(np.asarray(pts, dtype=np.float64) / float(time_base)).astype(np.int64)


def wanted_ticks(frame_ticks: np.ndarray, target_ticks: np.ndarray) -> np.ndarray:
    """For each target, the pts (ticks) of the frame shown then: last pts <= t, else the first.

    `frame_ticks` must be sorted ascending; both arrays are int64 ticks.
    """
    pos = np.searchsorted(frame_ticks, target_ticks, side="right") - 1
    return frame_ticks[np.clip(pos, 0, len(frame_ticks) - 1)]
