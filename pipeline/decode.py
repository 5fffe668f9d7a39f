"""Exact, GOP-aware frame decoding (DESIGN.md, Stage 1, step 3 "Decode").

Timeline: every time here is in **seconds relative to the video's first frame**
(the stream's start time is subtracted), unless a name says `ticks` (integer
pts in the stream's time base) or it is `VideoInfo.start_time` itself.

Semantics: the frame for target time t is the frame *shown* at t, i.e. the last
frame with pts <= t (the first frame if t precedes it, the last frame if t is
past the end). Frames are yielded in time order, each distinct frame once,
carrying the indices of all targets it serves; with fewer frames than
targets, several targets share one frame ("repeat the nearest frames").

Strategy (PyAV backend): a demux-only pass gives every packet's pts and the
keyframes. For each target, when a keyframe lies after the decoder's current
position and at or before the target (and skipping to it saves at least
MIN_SKIP_FRAMES frames), seek to it; otherwise decode forward. Knowing the
pts of the frame each target needs, the decoder may drop non-reference frames
nobody needs (`skip_frame = "NONREF"`, set per packet), which leaves every
needed frame bit-exact. It also knows which packet carries each needed
frame: once the last packet needed before a seek is sent, the decoder is
drained rather than fed the packets that B-frame reordering and frame
threads would otherwise need to push that frame out. Only frames that serve
a target are converted to RGB.
The ffmpeg binary (`ffmpeg_backend`) decodes the same targets and is the
fallback for files PyAV cannot open or decode.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("auto", "pyav", "ffmpeg")


class DecodeError(RuntimeError):
    """A video that cannot be decoded; `str(err)` is a one-line reason.

    `permanent` marks problems no other backend can fix (empty file, no video
    stream, a window outside the video), so `backend="auto"` does not retry.
    """

    def __init__(self, reason: str, permanent: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


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
            lands a backward seek on it (see `seek_offset`).
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


# --------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------


def segment_centre_timestamps(start: float, end: float, n: int) -> np.ndarray:
    """(n,) float64 seconds at the centres of n equal segments of [start, end].

    t_i = start + (i + 0.5) * (end - start) / n, the paper's uniform sampling.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if end < start:
        raise ValueError(f"end {end} precedes start {start}")
    return start + (np.arange(n, dtype=np.float64) + 0.5) * ((end - start) / n)


def normalise_rotation(degrees: float) -> int:
    """Counter-clockwise rotation snapped to 0, 90, 180 or 270 degrees."""
    return int(round(degrees / 90.0)) % 4 * 90


def apply_rotation(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Turn an (H, W, C) image `rotation` degrees counter-clockwise (contiguous copy if turned)."""
    k = normalise_rotation(rotation) // 90
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is at most `max_side`; never enlarged."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def wanted_ticks(frame_ticks: np.ndarray, target_ticks: np.ndarray) -> np.ndarray:
    """For each target, the pts (ticks) of the frame shown then: last pts <= t, else the first.

    `frame_ticks` must be sorted ascending; both arrays are int64 ticks.
    """
    pos = np.searchsorted(frame_ticks, target_ticks, side="right") - 1
    return frame_ticks[np.clip(pos, 0, len(frame_ticks) - 1)]


def target_ticks(times: np.ndarray, time_base: Fraction, start_tick: int) -> np.ndarray:
    """Targets (seconds from the first frame) as int64 ticks on the stream clock.

    Floors, because the frame shown at t has pts_tick * time_base <= t; the
    1e-6-tick nudge keeps float noise (0.64 / (1/25) = 15.999...) from
    dropping a frame that starts exactly at t.
    """
    return start_tick + np.floor(np.asarray(times, dtype=np.float64) / float(time_base) + 1e-6).astype(np.int64)


def _parse_hms(text: str) -> float | None:
    """Seconds from "HH:MM:SS.fraction" (Matroska's DURATION tag), None if malformed."""
    match = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*", text)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


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


# --------------------------------------------------------------------------
# PyAV: open and probe
# --------------------------------------------------------------------------


def _av_reason(err: Exception) -> str:
    """One-line reason from a PyAV/FFmpeg error (its strerror, not the repr)."""
    reason = getattr(err, "strerror", None) or str(err)
    return str(reason).splitlines()[0] if str(reason) else type(err).__name__


def _open_pyav(path: Path, threaded: bool = True):
    """Open `path` with PyAV: (container, first video stream); DecodeError otherwise.

    `threaded` turns on FFmpeg's frame and slice threads (decoding); a probe
    that decodes one frame is faster without them.
    """
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise DecodeError(f"cannot open: {_av_reason(err)}") from err
    if not container.streams.video:
        container.close()
        raise DecodeError("no video stream", permanent=True)
    stream = container.streams.video[0]
    if threaded:
        stream.thread_type = "AUTO"
    else:
        stream.codec_context.thread_count = 1
    return container, stream


def _declared_end(container, stream) -> float | None:
    """Seconds (stream clock) where the container says the video stream ends, if it says."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else None
    if stream.duration and tb:
        return (start or 0.0) + float(stream.duration * tb)
    tagged = _parse_hms(stream.metadata.get("DURATION", "")) if stream.metadata else None
    if tagged is not None:
        return (start or 0.0) + tagged
    if container.duration:
        return (container.start_time or 0) / 1e6 + container.duration / 1e6
    return None


def _scan_packets(container, stream) -> tuple[list[int], list[int], list[int], int, int]:
    """Demux (no decode) the whole video stream.

    Returns (pts ticks of all timed packets, keyframe pts ticks, keyframe
    seek offsets (see `seek_offset`), packet durations in ticks, rotation
    from the first decoded frame, number of packets with data). The first
    frame is decoded only to read its display-matrix rotation.
    """
    import av

    pts, keys, offsets, durations = [], [], [], []
    rotation, need_rotation, n_packets = 0, True, 0
    dts_shift: int | None = None
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.FFmpegError as err:
            log.info("demux stopped early: %s", _av_reason(err))
            break
        if packet.size == 0 or packet.is_discard:
            continue
        n_packets += 1
        if dts_shift is None and packet.dts is not None:
            dts_shift = max(0, -packet.dts)
        if packet.pts is not None:
            pts.append(packet.pts)
            durations.append(packet.duration or 0)
            if packet.is_keyframe:
                keys.append(packet.pts)
                offsets.append(seek_offset(packet.pts, packet.dts, dts_shift or 0))
        if need_rotation:
            try:
                for frame in packet.decode():
                    rotation, need_rotation = normalise_rotation(frame.rotation), False
            except av.FFmpegError:
                pass
    return pts, keys, offsets, durations, rotation, n_packets


def seek_offset(pts: int, dts: int | None, dts_shift: int) -> int:
    """Seek offset (ticks) that lands a backward seek on the keyframe with this pts.

    Most demuxers seek on pts; MP4 seeks on dts shifted by the edit list
    (`dts_shift` = minus the first packet's dts), which for B-frame video with
    variable frame rate lies after the keyframe's pts — seeking to the pts
    would land a whole GOP early. The larger of the two lands on the
    keyframe in both cases; the decoder still checks where it landed.
    """
    return pts if dts is None else max(pts, dts + dts_shift)


def probe(path: str | Path) -> VideoInfo:
    """Probe with PyAV (one demux pass, first frame decoded for its rotation).

    Falls back to the ffmpeg binary when PyAV cannot open the file. Raises
    DecodeError with a one-line reason.
    """
    path = check_file(path)
    try:
        return _probe_pyav(path)
    except DecodeError as err:
        if err.permanent:
            raise
        from hfs.pipeline import ffmpeg_backend

        log.info("PyAV cannot probe %s (%s); trying the ffmpeg binary", path, err)
        try:
            return ffmpeg_backend.probe(path)
        except DecodeError as ff_err:
            raise _combined(err, ff_err) from ff_err


def _probe_pyav(path: Path) -> VideoInfo:
    """`probe` with PyAV only."""
    container, stream = _open_pyav(path, threaded=False)
    try:
        pts, keys, offsets, durations, rotation, n_packets = _scan_packets(container, stream)
        return _make_info(container, stream, pts, keys, offsets, durations, rotation, n_packets)
    finally:
        container.close()


def _make_info(
    container,
    stream,
    pts: list[int],
    keys: list[int],
    offsets: list[int],
    durations: list[int],
    rotation: int,
    n_packets: int,
) -> VideoInfo:
    """Assemble a VideoInfo from a PyAV stream header and its demuxed packet list."""
    tb = stream.time_base
    rate = stream.average_rate or stream.guessed_rate
    return info_from_index(
        pts,
        keys,
        offsets,
        durations,
        time_base=Fraction(tb) if tb else None,
        fps=float(rate) if rate else 0.0,
        coded_size=(stream.codec_context.width, stream.codec_context.height),
        rotation=rotation,
        codec=stream.codec_context.name,
        declared_end=_declared_end(container, stream),
        header_start=float(stream.start_time * tb) if stream.start_time is not None and tb else None,
        header_frames=stream.frames or n_packets or None,
    )


def info_from_index(
    pts: Sequence[int],
    keys: Sequence[int],
    offsets: Sequence[int],
    durations: Sequence[int],
    *,
    time_base: Fraction | None,
    fps: float,
    coded_size: tuple[int, int],
    rotation: int,
    codec: str,
    declared_end: float | None,
    header_start: float | None,
    header_frames: int | None,
) -> VideoInfo:
    """VideoInfo from a demuxed packet list plus what the header says (both backends use it).

    Args:
        pts, durations: per timed packet, pts and duration in ticks of
            `time_base` (decode order).
        keys, offsets: per keyframe, its pts and its `seek_offset` (ticks).
        fps: the header's average rate (0 if unknown).
        coded_size: (width, height) of the stored pixels, before rotation.
        rotation: counter-clockwise display rotation in degrees.
        declared_end: where the header says the stream ends, seconds on the
            stream's clock; header_start: its start there.
        header_frames: the frame count (header or packets counted), used
            when packets have no pts.
    """
    rotation = normalise_rotation(rotation)
    frame_pts, index_end, keyframes, seek_offsets = None, None, [], None
    if len(pts) and time_base:
        ticks_all = np.asarray(pts, dtype=np.int64)
        order = np.argsort(ticks_all, kind="stable")
        ticks = np.unique(ticks_all)
        last_duration = int(durations[order[-1]]) or (round(1 / (fps * time_base)) if fps else 0)
        start_time = float(ticks[0] * time_base)
        frame_pts = (ticks - ticks[0]).astype(np.float64) * float(time_base)
        index_end = float((ticks[-1] - ticks[0] + last_duration) * time_base)
        by_key = dict(sorted(zip(keys, offsets)))
        keyframes = [float((k - ticks[0]) * time_base) for k in by_key]
        seek_offsets = np.array(list(by_key.values()), dtype=np.int64)
        n_frames = len(ticks)
    else:
        start_time = header_start or 0.0
        n_frames = header_frames
    duration = max(index_end or 0.0, (declared_end - start_time) if declared_end is not None else 0.0)
    if not fps and n_frames and duration:
        fps = n_frames / duration
    if not duration and n_frames and fps:  # untimed stream (raw bitstream): frames at the nominal rate
        duration = n_frames / fps
    width, height = coded_size
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        duration=duration,
        fps=fps,
        width=width,
        height=height,
        rotation=rotation,
        n_frames=n_frames,
        codec=codec,
        start_time=start_time,
        keyframes=keyframes,
        frame_pts=frame_pts,
        time_base=time_base,
        indexed_end=index_end,
        seek_offsets=seek_offsets,
    )


def _combined(first: DecodeError, second: DecodeError) -> DecodeError:
    """One DecodeError naming both backends' reasons (once if they agree)."""
    if first.reason == second.reason:
        return first
    return DecodeError(f"{first.reason} (ffmpeg: {second.reason})", permanent=first.permanent)


# --------------------------------------------------------------------------
# Target bookkeeping shared by both backends
# --------------------------------------------------------------------------


KNOWN_NONE = np.iinfo(np.int64).min
"""`_Assigner.known` value of a target whose frame the index cannot name."""


class _Assigner:
    """Hands sorted targets to frames under "last frame with pts <= t".

    Feed frames in time order with `push`; it returns the previous frame
    once a newer frame shows that no further target can need it. `finish`
    returns the last frame with every remaining target.

    `known` (optional, per target in the caller's order) is the pts of the
    frame each target needs, from a trusted packet index, or KNOWN_NONE
    where the index cannot say. A frame whose pts is known to be a target's
    is handed out as soon as it arrives, without waiting for the next one.
    """

    def __init__(self, target_ticks: np.ndarray, known: np.ndarray | None = None):
        self.order = np.argsort(target_ticks, kind="stable")
        self.ticks = target_ticks[self.order]
        self.known = None if known is None else np.asarray(known, dtype=np.int64)[self.order]
        self.next = 0  # position in self.order of the first unserved target
        self.held: tuple[object, int, list[int]] | None = None

    @property
    def done(self) -> bool:
        """True when every target has a frame."""
        return self.next >= len(self.ticks)

    def next_tick(self) -> int:
        """Tick of the earliest target still without a frame."""
        return int(self.ticks[self.next])

    def push(self, frame: object, tick: int) -> list[tuple[object, int, list[int]]]:
        """Add a decoded frame; returns the (frame, tick, targets) it finishes, oldest first.

        That is the previous frame once this newer one shows that no further
        target can need it, and this frame itself when it is the `known`
        frame of the next targets (at most two).
        """
        current = (frame, tick, [])
        while not self.done and tick > self.ticks[self.next]:
            # The target precedes this frame: the held frame was shown then
            # (or, before the first frame, this one).
            (self.held or current)[2].append(int(self.order[self.next]))
            self.next += 1
        finished = [self.held] if self.held is not None and self.held[2] else []
        if self.known is not None:
            while not self.done and self.known[self.next] == tick:
                current[2].append(int(self.order[self.next]))
                self.next += 1
            if current[2]:
                finished.append(current)
                current = (frame, tick, [])  # still the frame shown until the next one, its targets handed out
        self.held = current
        return finished

    def known_ticks(self, position: int) -> tuple[int, int | None]:
        """(known pts of the target at sorted `position`, that of the next target needing another frame).

        KNOWN_NONE where unknown; the second is None when no target follows.
        """
        tick = int(self.known[position])
        later = np.nonzero(self.known[position:] != tick)[0]
        return tick, (int(self.known[position + later[0]]) if len(later) else None)

    @property
    def decoded_any(self) -> bool:
        """True once any frame was pushed."""
        return self.held is not None

    def finish(self) -> tuple[object, int, list[int]] | None:
        """Give every remaining target to the last frame; None if it serves none (or none came)."""
        if self.held is None:
            return None
        while not self.done:
            self.held[2].append(int(self.order[self.next]))
            self.next += 1
        return self.held if self.held[2] else None


def _truncated_targets(last: DecodedFrame, target_s: np.ndarray, info: VideoInfo) -> list[int]:
    """Targets of the last decoded frame that lie past its end in a video that should go on.

    The frame ends where the demuxed index ends when it is the last indexed
    frame, else one average frame interval after its pts. A target is
    truncated when it lies past that end and the video's duration says more
    frames should follow (a file cut short, or undecodable data at its tail).
    """
    interval = 1 / info.fps if info.fps else 0.04
    frame_end = last.pts + interval
    if info.frame_pts is not None and info.indexed_end is not None and last.pts >= info.frame_pts[-1] - 1e-6:
        frame_end = info.indexed_end
    if info.duration <= frame_end + interval / 2:
        return []
    return [i for i in last.targets if target_s[i] > frame_end + 1e-9]


def _last_frame(
    assigner: _Assigner, emit: Callable[[tuple], DecodedFrame], timestamps: np.ndarray, info: VideoInfo, none_reason: str
) -> DecodedFrame | None:
    """The last decoded frame with every target still unserved, or None if it serves none.

    Targets past the end of a video that should go on are marked truncated.
    Raises DecodeError(`none_reason`) when no frame was decoded at all.
    """
    last = assigner.finish()
    if not assigner.decoded_any:
        raise DecodeError(none_reason)
    if last is None:
        return None
    result = emit(last)
    result.truncated = _truncated_targets(result, timestamps, info)
    return result


# --------------------------------------------------------------------------
# PyAV decoding
# --------------------------------------------------------------------------


def _to_rgb(frame, max_side: int | None, rotation: int, reformatter) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PyAV frame, shrunk to `max_side` and rotated for display.

    `reformatter` (an `av.video.reformatter.VideoReformatter`) keeps one
    swscale context for a whole video; `frame.to_ndarray(format=...)` builds
    and tears down a new one (tables, buffers, slice threads) per frame.
    """
    width, height = scaled_size(frame.width, frame.height, max_side)
    interpolation = None if (width, height) == (frame.width, frame.height) else "AREA"
    rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation=interpolation).to_ndarray()
    return apply_rotation(rgb, rotation)


SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"})
"""Decoders whose `skip_frame = "NONREF"` drops exactly the frames no other
frame references, so skipping them (when no target needs them) keeps every
needed frame bit-exact."""

MIN_SKIP_FRAMES = 8
"""Seek only when it skips at least this many frames: a seek flushes the
frames already in flight in the (frame-threaded) decoder, so hopping to a
keyframe just ahead costs more than decoding up to it."""


class _PyAVDecoder:
    """Decodes one video forward, seeking to keyframes when the plan says so.

    Positions are pts ticks on the stream clock. `keyframes` and
    `seek_offsets` come from the probe's demux pass.
    """

    def __init__(self, path: Path, info: VideoInfo, min_skip_frames: int = MIN_SKIP_FRAMES):
        import av

        self._av = av
        self.path, self.info, self.min_skip_frames = path, info, min_skip_frames
        self.container, self.stream = _open_pyav(path)
        tb = self.stream.time_base
        self.tb = Fraction(tb) if tb else Fraction(1, 1_000_000)
        self.start_tick = round(info.start_time / self.tb)
        self.step_ticks = max(1, round(1 / (info.fps * self.tb))) if info.fps else 1
        indexed = info.frame_pts is not None and info.seek_offsets is not None and tb
        self.frame_ticks = self.start_tick + np.round(info.frame_pts / float(self.tb)).astype(np.int64) if indexed else None
        self.keyframes = (
            self.start_tick + np.round(np.asarray(info.keyframes) / float(self.tb)).astype(np.int64)
            if indexed
            else np.zeros(0, dtype=np.int64)
        )
        self.seek_offsets = info.seek_offsets if indexed else np.zeros(0, dtype=np.int64)
        self.floor = 0  # index of the keyframe we last sought to (or sit at): never seek to it or before
        self.position: int | None = None  # pts of the last decoded frame
        self.stats = {"frames": 0, "packets": 0, "seeks": 0, "drains": 0, "resumes": 0, "landed_early": 0, "landed_late": 0, "errors": 0}
        self.reformatter = av.video.reformatter.VideoReformatter()  # one swscale context per video
        self.needed: set[int] | None = None  # pts of the frames targets need; others may be skipped
        self.drain_after: int | None = None  # pts of the packet after which no more packets are needed
        self.drained = False  # stopped at `drain_after`, everything decoded handed out
        self._pending = None
        self._frames: Iterator[object] | None = None
        self._set_frames(self._decode_from_here())

    def close(self) -> None:
        """Release the decode generator and the container now.

        The generator refers back to this object, so without this the pair
        (and FFmpeg's codec context with its threads) lives until the cyclic
        garbage collector runs, at any later moment: in a worker that has
        forked meanwhile, freeing it there waits forever for decoder threads
        that only exist in the parent.
        """
        self._set_frames(None)
        if self.container is not None:
            self.container.close()
            self.container = self.stream = None

    def _set_frames(self, frames: Iterator[object] | None) -> None:
        """Replace the decode generator, closing the old one first."""
        old, self._frames = self._frames, frames
        if old is not None:
            old.close()

    def skip_unneeded(self, needed_ticks: np.ndarray) -> bool:
        """Let the decoder skip non-reference frames whose pts is not in `needed_ticks`.

        Only with a trusted index and a decoder in SKIP_NONREF_CODECS; the
        skip flag is set per packet before it is sent, so needed frames and
        every reference frame are decoded in full. Returns whether it is on.
        """
        if self.frame_ticks is None or self.info.codec not in SKIP_NONREF_CODECS:
            return False
        self.needed = {int(t) for t in needed_ticks}
        return True

    def _decode_from_here(self) -> Iterator[object]:
        """Decoded frames from the container's current position to the end."""
        av = self._av
        ctx = self.stream.codec_context
        skipping = False
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.FFmpegError as err:
                log.info("demux stopped early: %s", _av_reason(err))
                yield from self._drain()
                return
            if self.needed is not None:
                skip = packet.pts is not None and packet.pts not in self.needed
                if skip != skipping:
                    ctx.skip_frame, skipping = ("NONREF" if skip else "DEFAULT"), skip
            elif skipping:
                ctx.skip_frame, skipping = "DEFAULT", False
            self.stats["packets"] += 1
            try:
                yield from packet.decode()
            except av.FFmpegError as err:
                self.stats["errors"] += 1
                log.debug("skipping undecodable packet at pts %s: %s", packet.pts, _av_reason(err))
            if self.drain_after is not None and packet.pts == self.drain_after:
                # The last frame needed before the next seek is in the decoder:
                # flush it out instead of decoding further packets to push it out.
                self.drained = True
                self.stats["drains"] += 1
                yield from self._drain()
                return

    def _drain(self) -> Iterator[object]:
        """Frames still inside the decoder (after the demuxer failed, or at a drain).

        The decoder takes no more packets until the next seek flushes it.
        """
        try:
            yield from self.stream.codec_context.decode(None)
        except self._av.FFmpegError:
            return

    def _tick(self, frame) -> int:
        """Frame pts in ticks; best effort (dts, then one step on) when it has none."""
        tick = frame.pts if frame.pts is not None else getattr(frame, "dts", None)
        if tick is None:
            tick = self.start_tick if self.position is None else self.position + self.step_ticks
        return int(tick)

    def next_frame(self) -> tuple[object, int] | None:
        """(frame, pts ticks) of the next decoded frame, or None at the end."""
        frame, self._pending = self._pending, None
        if frame is None:
            frame = next(self._frames, None)
            if frame is None and self.drained:
                frame = self._resume()
            if frame is None:
                return None
        tick = self._tick(frame)
        self.position = tick
        self.stats["frames"] += 1
        return frame, tick

    def keyframe_to_seek(self, target_tick: int) -> int | None:
        """Index of the keyframe to seek to before decoding towards `target_tick`, or None.

        The last keyframe at or before the target, when it lies after the
        current position (and after the last keyframe sought to) with at
        least `min_skip_frames` frames in between (any number once the
        decoder is drained: nothing is in flight); otherwise decode forward.
        """
        i = int(np.searchsorted(self.keyframes, target_tick, side="right")) - 1
        if i <= self.floor:
            return None
        keyframe = int(self.keyframes[i])
        if self.position is not None and keyframe <= self.position:
            return None
        if self.drained:
            return i
        here = int(np.searchsorted(self.frame_ticks, self.position, side="right")) if self.position is not None else 0
        skipped = int(np.searchsorted(self.frame_ticks, keyframe, side="left")) - here
        return i if skipped >= self.min_skip_frames else None

    def seek(self, i: int) -> None:
        """Seek so that decoding resumes at keyframe `i` (or before it, never after).

        Tries the keyframe's seek offset, then its pts, then earlier
        keyframes; a landing after the keyframe would skip frames, so when
        every try overshoots it restarts from the beginning without seeking.
        """
        keyframe = int(self.keyframes[i])
        self.drained = False
        tries = [int(self.seek_offsets[i]), keyframe] + [int(k) for k in self.keyframes[max(0, i - 2) : i][::-1]]
        for offset in dict.fromkeys(tries):  # unique, in order
            self.stats["seeks"] += 1
            self._set_frames(None)
            self.container.seek(offset, backward=True, any_frame=False, stream=self.stream)
            self._set_frames(self._decode_from_here())
            first = next(self._frames, None)
            landed = self._tick(first) if first is not None else None
            if landed is not None and landed <= keyframe:
                self.stats["landed_early"] += landed < keyframe
                self._pending, self.floor, self.position = first, i, None
                return
            self.stats["landed_late"] += 1
            log.debug("seek to offset %d for keyframe %d landed at %s; trying earlier", offset, keyframe, landed)
        self._restart()

    def drain_point(self, tick: int, next_tick: int | None) -> int | None:
        """Where to stop feeding packets when the frame with pts `tick` is the last one
        needed before the target needing the frame with pts `next_tick`: `tick`
        itself when a keyframe after it leads to `next_tick` (or when nothing
        follows), else None (decode on). KNOWN_NONE for either means unknown.
        """
        if tick == KNOWN_NONE or next_tick == KNOWN_NONE:
            return None
        if next_tick is None:
            return tick
        i = int(np.searchsorted(self.keyframes, next_tick, side="right")) - 1
        return tick if i >= 0 and int(self.keyframes[i]) > tick else None

    def _resume(self) -> object | None:
        """First frame after `position` once decoding stopped at a drain that no seek followed.

        Seeks back to the keyframe at or before the position and drops the
        frames already handed out (rare: a drain is planned only where a seek
        follows, but the decoder's position can rule that seek out).
        """
        position = self.position
        if position is None or (self.drain_after is not None and self.drain_after <= position):
            self.drain_after = None  # the drain already done; a later one (the next target's) stays
        self.stats["resumes"] += 1
        log.debug("%s: resuming after a drain at pts %s", self.path, position)
        i = int(np.searchsorted(self.keyframes, position, side="right")) - 1 if position is not None else -1
        if i >= 0:
            self.seek(i)
        else:
            self._restart()
        while True:
            frame, self._pending = self._pending, None
            if frame is None:
                frame = next(self._frames, None)
            if frame is None or position is None or self._tick(frame) > position:
                return frame

    def _restart(self) -> None:
        """Back to the first frame with seeking disabled (when seeks cannot be trusted)."""
        log.info("%s: seeking lands after the keyframe; decoding from the start instead", self.path)
        self.close()
        self.container, self.stream = _open_pyav(self.path)
        self.floor = len(self.keyframes)
        self.drained = False
        self._pending, self.position = None, None
        self._set_frames(self._decode_from_here())


def _iter_pyav(path: Path, timestamps: np.ndarray, info: VideoInfo, max_side: int | None) -> Iterator[DecodedFrame]:
    """PyAV backend of `iter_frames` (see the module docstring for the strategy)."""
    decoder = _PyAVDecoder(path, info)
    try:
        yield from _run_pyav(decoder, timestamps, info, max_side)
    finally:
        log.debug("%s: %s", path, decoder.stats)
        decoder.close()


def _run_pyav(decoder: _PyAVDecoder, timestamps: np.ndarray, info: VideoInfo, max_side: int | None) -> Iterator[DecodedFrame]:
    """The decode loop: per target, seek or decode forward; hand frames to targets.

    With a packet index the frame each target needs is known: it is handed
    out as soon as it is decoded, and when a seek follows it, the decoder
    is drained right after that frame's packet instead of being fed more
    packets to push the frame out (B-frame reordering and frame threads
    hold several frames back).
    """
    tb = decoder.tb
    targets = target_ticks(timestamps, tb, decoder.start_tick)
    expected = wanted_ticks(decoder.frame_ticks, targets) if decoder.frame_ticks is not None else None
    known = None
    if expected is not None:
        decoder.skip_unneeded(expected)
        # The last indexed frame is left to `_last_frame`, which checks for truncation.
        known = np.where(expected < decoder.frame_ticks[-1], expected, KNOWN_NONE)
    assigner = _Assigner(targets, known)
    planned_for = -1  # the target whose seek decision is made (it cannot change while decoding forward)

    def emit(item) -> DecodedFrame:
        frame, tick, served = item
        if expected is not None and assigner.known is not None and np.any(expected[served] != tick):
            # The decoder's pts disagree with the demuxed index: stop relying on it.
            log.warning("%s: decoded pts differ from the packet index; decoding every frame from here", decoder.path)
            decoder.needed = assigner.known = decoder.drain_after = None
        return DecodedFrame(sorted(served), _to_rgb(frame, max_side, frame.rotation, decoder.reformatter), float((tick - decoder.start_tick) * tb))

    while not assigner.done:
        if assigner.next != planned_for:
            planned_for = assigner.next
            keyframe = decoder.keyframe_to_seek(assigner.next_tick())
            decoder.drain_after = decoder.drain_point(*assigner.known_ticks(assigner.next)) if assigner.known is not None else None
            if keyframe is not None:
                decoder.seek(keyframe)
        got = decoder.next_frame()
        if got is None:
            break
        for finished in assigner.push(*got):
            yield emit(finished)

    if decoder.stats["errors"]:
        log.warning("%s: %d packets could not be decoded", decoder.path, decoder.stats["errors"])
    last = _last_frame(assigner, emit, timestamps, info, "no decodable video frames")
    if last is not None:
        yield last


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def _backend_iter(path: Path, timestamps: np.ndarray, backend: str, info: VideoInfo | None, max_side: int | None):
    """(backend name, info, iterator of DecodedFrame) for one backend, no fallback."""
    if backend == "pyav":
        info = info or _probe_pyav(path)
        return "pyav", info, _iter_pyav(path, timestamps, info, max_side)
    if backend == "ffmpeg":
        from hfs.pipeline import ffmpeg_backend

        info = ffmpeg_backend.probe(path)
        return "ffmpeg", info, ffmpeg_backend.iter_frames(path, timestamps, info, max_side)
    raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")


def _first_and_rest(frames: Iterator[DecodedFrame]) -> tuple[DecodedFrame, Iterator[DecodedFrame]]:
    """Pull the first frame (where most failures show) and return it with the rest."""
    first = next(frames, None)
    if first is None:
        raise DecodeError("no decodable video frames")
    return first, frames


def _open_frames(
    path: Path,
    timestamps: np.ndarray,
    backend: str,
    info: VideoInfo | None = None,
    max_side: int | None = None,
) -> tuple[str, VideoInfo, Iterator[DecodedFrame]]:
    """Start decoding with `backend`; "auto" is PyAV, then ffmpeg if PyAV fails before its first frame."""
    if backend != "auto":
        name, info, frames = _backend_iter(path, timestamps, backend, info, max_side)
        first, rest = _first_and_rest(frames)
        return name, info, _chain(name, first, rest)
    try:
        name, info, frames = _backend_iter(path, timestamps, "pyav", info, max_side)
        first, rest = _first_and_rest(frames)
        return name, info, _chain(name, first, rest)
    except DecodeError as err:
        if err.permanent:
            raise
        log.warning("PyAV failed on %s (%s); falling back to the ffmpeg binary", path, err)
        try:
            name, info, frames = _backend_iter(path, timestamps, "ffmpeg", None, max_side)
            first, rest = _first_and_rest(frames)
        except DecodeError as ff_err:
            raise _combined(err, ff_err) from ff_err
        return name, info, _chain(name, first, rest)


def _chain(backend: str, first: DecodedFrame, rest: Iterator[DecodedFrame]) -> Iterator[DecodedFrame]:
    """`first` followed by `rest`, each stamped with the backend that decoded it."""
    first.backend = backend
    yield first
    for frame in rest:
        frame.backend = backend
        yield frame


def iter_frames(
    path: str | Path,
    timestamps: Sequence[float],
    backend: str = "auto",
    max_side: int | None = None,
    info: VideoInfo | None = None,
) -> Iterator[DecodedFrame]:
    """Decode the frame shown at each of `timestamps` (seconds from the first frame).

    Yields DecodedFrame in time order, each distinct frame once with the
    indices of the targets it serves. `backend` is "auto" (PyAV, falling back
    to the ffmpeg binary when PyAV cannot open or decode the file), "pyav" or
    "ffmpeg". `max_side` shrinks frames whose longer side exceeds it. `info`,
    a PyAV `probe` of the same file, saves probing it again.
    Raises DecodeError with a one-line reason.
    """
    path = check_file(path)
    times = np.asarray(timestamps, dtype=np.float64)
    if times.ndim != 1 or not len(times):
        raise ValueError("timestamps must be a non-empty 1-D sequence of seconds")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    _, _, frames = _open_frames(path, times, backend, info=info if backend != "ffmpeg" else None, max_side=max_side)
    yield from frames


def _window(info: VideoInfo, start: float | None, end: float | None) -> tuple[float, float]:
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


def decode_frames(
    path: str | Path,
    n: int = 128,
    start: float | None = None,
    end: float | None = None,
    backend: str = "auto",
    max_side: int | None = None,
) -> DecodeResult:
    """The n frames shown at the segment centres of [start or 0, min(end, duration)].

    Times are seconds from the first frame. Videos with fewer than n frames in
    the window repeat the nearest frames; `DecodeResult.distinct` says how many
    were distinct. Raises DecodeError with a one-line reason.
    """
    t0 = time.perf_counter()
    path = check_file(path)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    if backend == "ffmpeg":
        info = None
    else:
        try:
            info = _probe_pyav(path)
        except DecodeError as err:
            if err.permanent or backend == "pyav":
                raise
            log.warning("PyAV cannot open %s (%s); falling back to the ffmpeg binary", path, err)
            backend, info = "ffmpeg", None
    if info is None:
        from hfs.pipeline import ffmpeg_backend

        info = ffmpeg_backend.probe(path)
    timestamps = segment_centre_timestamps(*_window(info, start, end), n)
    name, info, frames = _open_frames(path, timestamps, backend, info=info if backend != "ffmpeg" else None, max_side=max_side)
    return _collect(frames, timestamps, info, name, t0)


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
