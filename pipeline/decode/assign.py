"""Hands decoded frames to targets under "the frame shown at t is the last with pts <= t".

Both backends feed frames in time order and get back each distinct frame
once, with every target it serves; with fewer frames than targets, several
targets share one frame ("repeat the nearest frames"). The last frame takes
every target left and is checked for a truncated file.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from hfs.pipeline.decode.records import DecodedFrame, DecodeError, VideoInfo

KNOWN_NONE = np.iinfo(np.int64).min
"""`Assigner.known` value of a target whose frame the index cannot name."""


class Assigner:
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


def truncated_targets(last: DecodedFrame, target_s: np.ndarray, info: VideoInfo) -> list[int]:
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


def last_frame(
    assigner: Assigner, emit: Callable[[tuple], DecodedFrame], timestamps: np.ndarray, info: VideoInfo, none_reason: str
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
    result.truncated = truncated_targets(result, timestamps, info)
    return result
