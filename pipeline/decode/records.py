"""What the decoder reads and returns: `VideoInfo` (a probe), `DecodedFrame`
(one distinct frame and its targets), `DecodeResult` (per target), and
`DecodeError` with `check_file`, the first check every path goes through.

Times are seconds relative to the video's first frame unless a name says
`ticks` (integer pts in the stream's time base) or it is `VideoInfo.start_time`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np


class DecodeError(RuntimeError):
    """A video that cannot be decoded; `str(err)` is a one-line reason.

    `permanent` marks problems no other backend can fix (empty file, no video
    stream, a window outside the video), so `backend="auto"` does not retry.
    """

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def check_file(path: str | Path) -> Path:
    """`path` as a Path; DecodeError (permanent) when it is missing, not a file or empty."""
    path = Path(path)
    if not path.exists():
        raise DecodeError(f"file not found: {path}", permanent=True)
    if not path.is_file():
        raise DecodeError(f"not a regular file: {path}", permanent=True)
    if os.path.getsize(path) == 0:
        raise DecodeError("file is empty (0 bytes)", permanent=True)
    return path


@dataclass(frozen=True)
class VideoInfo:
    """What a probe learns about a video's first video stream.

    Attributes:
        duration: seconds from the first frame to the end of the last one (the
            container's declared duration when it is longer, e.g. a truncated file).
        fps: average frame rate (frames per second).
        width, height: display size in pixels, rotation applied.
        rotation: counter-clockwise degrees (0, 90, 180, 270) the stored
            pixels are turned for display (FFmpeg's display matrix).
        n_frames: frames in the stream (packets counted), None if unknown.
        codec: decoder name, e.g. "h264".
        start_time: pts of the first frame in seconds on the stream's own clock.
        keyframes: keyframe pts in seconds relative to the first frame (may be empty).
        frame_pts: (n_frames,) sorted pts of every frame in seconds relative to
            the first frame; None when packets carry no timestamps.
        time_base: the stream's time base (seconds per tick), None if unknown.
        indexed_end: end of the last frame found by demuxing, in seconds; less
            than `duration` when the file is truncated. None without timestamps.
        seek_offsets: per keyframe, the offset in ticks (stream clock) that
            lands a backward seek on it (see `index.seek_offset`).
    """

    duration: float
    fps: float
    width: int
    height: int
    rotation: int
    n_frames: int | None
    codec: str
    start_time: float
    keyframes: list[float] = field(default_factory=list)
    frame_pts: np.ndarray | None = field(default=None, repr=False, compare=False)
    time_base: Fraction | None = None
    indexed_end: float | None = None
    seek_offsets: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass
class DecodedFrame:
    """One distinct decoded frame and the targets it serves.

    Attributes:
        targets: indices into the requested timestamps that get this frame.
        rgb: (H, W, 3) uint8, rotation applied.
        pts: presentation time in seconds relative to the first frame.
        truncated: the subset of `targets` past the point where a truncated or
            damaged file stops being decodable (they got the last good frame).
        backend: "pyav" or "ffmpeg", whichever decoded it.
    """

    targets: list[int]
    rgb: np.ndarray
    pts: float
    truncated: list[int] = field(default_factory=list)
    backend: str = ""


@dataclass
class DecodeResult:
    """Frames for `n` targets (see `decode_frames`).

    Attributes:
        frames: n arrays (H, W, 3) uint8; targets that share a frame share the array.
        timestamps: (n,) requested times in seconds (segment centres).
        pts: (n,) seconds of the frame each target got.
        frame_ids: (n,) int, index of each target's frame among the distinct
            frames in time order (0 .. distinct - 1).
        distinct: number of distinct frames decoded.
        truncated: targets past the decodable end of a truncated file.
        info: the probe of the video.
        decode_s: wall-clock seconds spent probing and decoding.
        backend: "pyav" or "ffmpeg", whichever produced the frames.
    """

    frames: list[np.ndarray]
    timestamps: np.ndarray
    pts: np.ndarray
    frame_ids: np.ndarray
    distinct: int
    truncated: int
    info: VideoInfo
    decode_s: float
    backend: str
