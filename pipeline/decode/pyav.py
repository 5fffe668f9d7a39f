"""The PyAV backend: decodes in-process, carrying out the seek/drain plan (`plan.py`).

The probe's demux pass (`index.py`) gives every frame's pts and the
keyframes; `plan_decode` turns the targets into steps (seek to a keyframe
or decode forward, drain before a seek); `execute` carries them out and
checks as it goes:

- Exact frames: a seek must land on its keyframe or before it, never after
  (that would skip frames). It tries the keyframe's seek offset, its pts,
  then earlier keyframes; when every try lands late the decoder starts over
  from the first frame with seeking off.
- Knowing the pts of the frame each target needs, the decoder may drop
  non-reference frames nobody needs (`skip_frame = "NONREF"`, set per
  packet), which leaves every needed frame bit-exact, and hands each needed
  frame out as soon as it is decoded.
- Drain before a seek: once the packet of the last frame needed before a
  seek is sent, the decoder is drained rather than fed the packets that
  B-frame reordering and frame threads would otherwise need to push that
  frame out.
- When the decoded pts disagree with the index, or seeks cannot be trusted,
  the rest of the plan is dropped and every frame from there on is decoded.
- Only frames that serve a target are converted to RGB, through one swscale
  context per video.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from hfs.pipeline.decode.assign import KNOWN_NONE, Assigner, last_frame
from hfs.pipeline.decode.geometry import apply_rotation, scaled_size
from hfs.pipeline.decode.plan import MIN_SKIP_FRAMES, Step, drain_point, plan_decode
from hfs.pipeline.decode.records import DecodedFrame, DecodeError, VideoInfo
from hfs.pipeline.decode.timeline import pts_ticks, target_ticks, wanted_ticks

log = logging.getLogger(__name__)

SKIP_NONREF_CODECS = frozenset({"h264", "hevc", "mpeg4", "mpeg2video", "mpeg1video"})
"""Decoders whose `skip_frame = "NONREF"` drops exactly the frames no other
frame references, so skipping them (when no target needs them) keeps every
needed frame bit-exact."""


def av_reason(err: Exception) -> str:
    """One-line reason from a PyAV/FFmpeg error (its strerror, not the repr)."""
    reason = getattr(err, "strerror", None) or str(err)
    return str(reason).splitlines()[0] if str(reason) else type(err).__name__


def open_container(path: Path, threaded: bool = True, threads: int | None = None):
    """Open `path` with PyAV: (container, first video stream); DecodeError otherwise.

    `threaded` turns on FFmpeg's frame and slice threads (decoding), `threads`
    of them (None: FFmpeg's own choice, one per core); a probe that decodes
    one frame is faster without them.
    """
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as err:
        raise DecodeError(f"cannot open: {av_reason(err)}") from err
    if not container.streams.video:
        container.close()
        raise DecodeError("no video stream", permanent=True)
    stream = container.streams.video[0]
    if threaded:
        stream.thread_type = "AUTO"
        if threads is not None:
            stream.codec_context.thread_count = max(1, int(threads))
    else:
        stream.codec_context.thread_count = 1
    return container, stream


def to_rgb(frame, max_side: int | None, rotation: int, reformatter, threads: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PyAV frame, shrunk to `max_side` and rotated for display.

    `reformatter` (an `av.video.reformatter.VideoReformatter`) keeps one
    swscale context for a whole video; `frame.to_ndarray(format=...)` builds
    and tears down a new one (tables, buffers, slice threads) per frame.
    Shrinking happens in that same conversion (one pass over the pixels).
    `threads`: swscale's threads (None: PyAV's default, one per core).
    """
    width, height = scaled_size(frame.width, frame.height, max_side)
    interpolation = None if (width, height) == (frame.width, frame.height) else "AREA"
    options = {} if threads is None else {"threads": max(1, int(threads))}
    rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24", interpolation=interpolation,
                               **options).to_ndarray()
    return apply_rotation(rgb, rotation)


class PyAVDecoder:
    """Decodes one video forward, seeking to keyframes when told to.

    Positions are pts ticks on the stream clock. `frame_ticks`, `keyframes`
    and `seek_offsets` come from the probe's demux pass (None and empty
    when packets carry no timestamps: then there is nothing to plan with).
    """

    def __init__(self, path: Path, info: VideoInfo, min_skip_frames: int = MIN_SKIP_FRAMES, threads: int | None = None):
        import av

        self._av = av
        self.path, self.info, self.min_skip_frames, self.threads = path, info, min_skip_frames, threads
        self.container, self.stream = open_container(path, threads=threads)
        tb = self.stream.time_base
        self.tb = Fraction(tb) if tb else Fraction(1, 1_000_000)
        self.start_tick = round(info.start_time / self.tb)
        self.step_ticks = max(1, round(1 / (info.fps * self.tb))) if info.fps else 1
        indexed = info.frame_pts is not None and info.seek_offsets is not None and tb
        self.frame_ticks = pts_ticks(info.frame_pts, self.tb, self.start_tick) if indexed else None
        self.keyframes = pts_ticks(info.keyframes, self.tb, self.start_tick) if indexed else np.zeros(0, dtype=np.int64)
        self.seek_offsets = info.seek_offsets if indexed else np.zeros(0, dtype=np.int64)
        self.seekable = True  # False once every try of a seek landed after its keyframe
        self.position: int | None = None  # pts of the last frame handed out
        self.stats = {"frames": 0, "packets": 0, "seeks": 0, "drains": 0, "resumes": 0, "landed_early": 0, "landed_late": 0, "errors": 0}
        self.reformatter = av.video.reformatter.VideoReformatter()  # one swscale context per video
        self.needed: set[int] | None = None  # pts of the frames targets need; others may be skipped
        self.drain_after: int | None = None  # pts of the packet after which no more packets are needed
        self.drained = False  # stopped at `drain_after`; takes no packets until a seek
        self._drained_at: int | None = None  # the packet pts it drained after
        self._handed_out: int | None = None  # after a seek: drop frames up to this pts (handed out before)
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

    def plan(self, targets: np.ndarray) -> list[Step]:
        """The seek/drain plan for `targets` (ticks) on this video's index, drains by `drain_point`."""
        return plan_decode(self.frame_ticks, self.keyframes, targets, min_skip_frames=self.min_skip_frames, drain_rule=self.drain_point)

    def drain_point(self, tick: int, next_tick: int | None) -> int | None:
        """Where to drain after the needed frame with pts `tick` (see `plan.drain_point`)."""
        return drain_point(self.keyframes, tick, next_tick)

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
                log.info("demux stopped early: %s", av_reason(err))
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
                log.debug("skipping undecodable packet at pts %s: %s", packet.pts, av_reason(err))
            if self.drain_after is not None and packet.pts == self.drain_after:
                # The last frame needed before the next seek is in the decoder:
                # flush it out instead of decoding further packets to push it out.
                self.drained, self._drained_at = True, packet.pts
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
        """(frame, pts ticks) of the next decoded frame, or None at the end.

        Frames handed out before a seek back are dropped. A drained decoder
        asked for more resumes (see `_resume`) rather than hand out what is
        left in it past the drain point: B-frames between were never sent.
        """
        while True:
            frame, self._pending = self._pending, None
            if frame is None:
                frame = next(self._frames, None)
            if self.drained and (frame is None or self._tick(frame) > self._drained_at):
                self._resume()
                continue
            if frame is None:
                return None
            tick = self._tick(frame)
            if self._handed_out is not None:
                if tick <= self._handed_out:
                    continue
                self._handed_out = None
            self.position = tick
            self.stats["frames"] += 1
            return frame, tick

    def seek(self, i: int) -> None:
        """Seek so that decoding resumes at keyframe `i` (or before it, never after).

        Tries the keyframe's seek offset, then its pts, then earlier
        keyframes; a landing after the keyframe would skip frames, so when
        every try overshoots it restarts from the beginning without seeking.
        A keyframe at or before the position is a resume after a drain: the
        frames up to the position, handed out already, are dropped.
        """
        keyframe = int(self.keyframes[i])
        self.drained = False
        if self.position is not None and keyframe <= self.position:
            self.stats["resumes"] += 1
            log.debug("%s: resuming after a drain at pts %s", self.path, self.position)
        self._handed_out = self.position
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
                self._pending = first
                return
            self.stats["landed_late"] += 1
            log.debug("seek to offset %d for keyframe %d landed at %s; trying earlier", offset, keyframe, landed)
        self._restart()

    def _resume(self) -> None:
        """Carry on after a drain that no seek followed (off the plan): seek back to the
        keyframe at or before the position, or start over, and decode on without draining."""
        self.drain_after = None
        i = int(np.searchsorted(self.keyframes, self.position, side="right")) - 1 if self.position is not None else -1
        if i >= 0 and self.seekable:
            self.seek(i)
        else:
            self.stats["resumes"] += 1
            self._restart()

    def _restart(self) -> None:
        """Back to the first frame with seeking off (when seeks cannot be trusted)."""
        log.info("%s: seeking lands after the keyframe; decoding from the start instead", self.path)
        self.close()
        self.container, self.stream = open_container(self.path, threads=self.threads)
        self.seekable = False
        self.drained = False
        self._handed_out, self._pending = self.position, None
        self._set_frames(self._decode_from_here())


def iter_frames(path: Path, timestamps: np.ndarray, info: VideoInfo, max_side: int | None = None,
                threads: int | None = None) -> Iterator[DecodedFrame]:
    """PyAV backend of `hfs.pipeline.decode.iter_frames`; `info` is PyAV's probe of `path`."""
    decoder = PyAVDecoder(path, info, threads=threads)
    try:
        yield from execute(decoder, timestamps, info, max_side)
    finally:
        log.debug("%s: %s", path, decoder.stats)
        decoder.close()


def execute(decoder: PyAVDecoder, timestamps: np.ndarray, info: VideoInfo, max_side: int | None) -> Iterator[DecodedFrame]:
    """Carry out the decoder's plan for `timestamps`; yield each needed frame as soon as it is decoded.

    Without a packet index there is no plan: every frame is decoded in turn.
    When the decoded pts disagree with the index, or every try of a seek
    lands late, the rest of the plan is dropped and the frames from there
    on are all decoded.
    """
    tb = decoder.tb
    targets = target_ticks(timestamps, tb, decoder.start_tick)
    steps: list[Step] = []
    expected = known = None
    if decoder.frame_ticks is not None:
        expected = wanted_ticks(decoder.frame_ticks, targets)
        decoder.skip_unneeded(expected)
        # The last indexed frame is left to `last_frame`, which checks for truncation.
        known = np.where(expected < decoder.frame_ticks[-1], expected, KNOWN_NONE)
        steps = decoder.plan(targets)
    assigner = Assigner(targets, known)

    def emit(item) -> DecodedFrame:
        frame, tick, served = item
        if assigner.known is not None and np.any(expected[served] != tick):
            log.warning("%s: decoded pts differ from the packet index; decoding every frame from here", decoder.path)
            decoder.needed = assigner.known = decoder.drain_after = None
        rgb = to_rgb(frame, max_side, frame.rotation, decoder.reformatter, decoder.threads)
        return DecodedFrame(sorted(served), rgb, float((tick - decoder.start_tick) * tb))

    def decode_until(served: int):
        """Decode and yield frames until the first `served` targets (by time) have theirs; False at the end."""
        while assigner.next < served:
            got = decoder.next_frame()
            if got is None:
                return False
            for finished in assigner.push(*got):
                yield emit(finished)
        return True

    served = 0
    for step in steps:
        if assigner.known is None:
            break  # the index proved wrong
        seek = step.seek if decoder.drained else step.seek_undrained  # a drain can come too late (read-ahead)
        decoder.drain_after = step.frame if step.drain else None
        if seek is not None:
            decoder.seek(seek)
            if not decoder.seekable:
                break  # decoding from the start instead
        served += len(step.targets)
        if not (yield from decode_until(served)):
            break
    decoder.drain_after = None
    yield from decode_until(len(targets))  # no plan, or the plan dropped: every frame from here

    if decoder.stats["errors"]:
        log.warning("%s: %d packets could not be decoded", decoder.path, decoder.stats["errors"])
    last = last_frame(assigner, emit, timestamps, info, "no decodable video frames")
    if last is not None:
        yield last
