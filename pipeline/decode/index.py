"""The packet index: one demux pass (no decoding) gives every frame's pts and the keyframes.

Demuxing packets alone is cheap, and it is what makes the decoder GOP-aware
and exact: the plan (`plan.py`) reads the keyframes from it, and every
target's frame is known by its pts before anything is decoded. Both
backends' probes end in `info_from_index`: PyAV through `probe_container`,
the ffmpeg binary through its framecrc listing (`ffmpeg.py`).
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from typing import Sequence

import numpy as np

from hfs.pipeline.decode.geometry import normalise_rotation
from hfs.pipeline.decode.pyav import av_reason
from hfs.pipeline.decode.records import VideoInfo

log = logging.getLogger(__name__)


def seek_offset(pts: int, dts: int | None, dts_shift: int) -> int:
    """Seek offset (ticks) that lands a backward seek on the keyframe with this pts.

    Most demuxers seek on pts; MP4 seeks on dts shifted by the edit list
    (`dts_shift` = minus the first packet's dts), which for B-frame video with
    variable frame rate lies after the keyframe's pts — seeking to the pts
    would land a whole GOP early. The larger of the two lands on the
    keyframe in both cases; the decoder still checks where it landed.
    """
    return pts if dts is None else max(pts, dts + dts_shift)


def parse_hms(text: str) -> float | None:
    """Seconds from "HH:MM:SS.fraction" (Matroska's DURATION tag), None if malformed."""
    match = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*", text)
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


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


# --------------------------------------------------------------------------
# PyAV: the index from an open container
# --------------------------------------------------------------------------


def probe_container(container, stream) -> VideoInfo:
    """VideoInfo of an open PyAV container's video `stream`: its header plus one demux pass."""
    pts, keys, offsets, durations, rotation, n_packets = scan_packets(container, stream)
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
        declared_end=declared_end(container, stream),
        header_start=float(stream.start_time * tb) if stream.start_time is not None and tb else None,
        header_frames=stream.frames or n_packets or None,
    )


def declared_end(container, stream) -> float | None:
    """Seconds (stream clock) where the container says the video stream ends, if it says."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else None
    if stream.duration and tb:
        return (start or 0.0) + float(stream.duration * tb)
    tagged = parse_hms(stream.metadata.get("DURATION", "")) if stream.metadata else None
    if tagged is not None:
        return (start or 0.0) + tagged
    if container.duration:
        return (container.start_time or 0) / 1e6 + container.duration / 1e6
    return None


def scan_packets(container, stream) -> tuple[list[int], list[int], list[int], list[int], int, int]:
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
            log.info("demux stopped early: %s", av_reason(err))
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
