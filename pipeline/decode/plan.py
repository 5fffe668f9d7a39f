"""The seek-or-decode-forward plan: a pure function of frame, keyframe and target ticks.

DESIGN.md, Stage 1, step 3: GOP-aware, decided per target from the keyframe
index. The packet index (`index.py`) gives every frame's pts and the
keyframes'; the targets are the times to show; all three are integer ticks
on the stream's clock. `plan_decode` turns them into one `Step` per frame
the targets need, in time order: whether to seek first, which frames are
decoded on the way, and whether the decoder is drained after the needed
frame's packet. Nothing here touches a video; `pyav.py` executes the plan
and checks it against the frames the decoder really puts out.

The rules, with the decoder's position the pts of the last needed frame
(none before the first):

- Seek or decode forward. For the next target, take the last keyframe at or
  before it. Seek to it when it lies after the position and after the
  keyframe last sought to (decoding starts at keyframe 0), and when the
  seek skips at least `min_skip_frames` frames; otherwise decode forward.
  Measured, neither fixed strategy wins everywhere: seeking per target is 6x
  faster than decoding through on 1-second-GOP video and 9x slower on a
  60-s clip with long GOPs.
- Drain before a seek. When a keyframe after the needed frame leads to the
  next needed frame (so a seek follows), or no needed frame follows, the
  needed frame's packet is the last one fed and the decoder is drained:
  B-frame reordering and frame threads would otherwise want several more
  packets, decoding frames nobody needs, to push that frame out. The same
  read-ahead can make a drain come too late: when the needed frame's packet
  was sent before the previous needed frame came out, the decoder is still
  being fed, and the next step seeks by the min-skip rule alone
  (`Step.seek_undrained`); from the step after, both paths agree again.
- Resume. A drained decoder takes no more packets until a seek. When no
  seek forward follows a drain (only a caller's own drain rule plans such a
  drain), it seeks back to the keyframe at or before its position and
  decodes forward again, dropping the frames it has handed out already.
- The last indexed frame is handed out only at the end of the stream, where
  a truncated file shows, so no drain is planned at it or on the way to it.

Every frame stays exact: a seek lands on a keyframe, and decoding forward
from a keyframe gives the same pixels as decoding from the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import numpy as np

from hfs.pipeline.decode.timeline import wanted_ticks

MIN_SKIP_FRAMES = 8
"""Seek only when it skips at least this many frames: a seek flushes the
frames already in flight in the (frame-threaded) decoder, so hopping to a
keyframe just ahead costs more than decoding up to it."""

DrainRule = Callable[[int, int | None], int | None]
"""(needed frame's pts, next needed frame's pts or None) -> pts to drain after, or None."""


@dataclass(frozen=True)
class Step:
    """Get one frame that targets need.

    Attributes:
        frame: pts (ticks) of the needed frame, the one shown at `targets`.
        targets: indices into the planned target ticks that get this frame, ascending.
        seek: index into the keyframes to seek to first, or None: decode
            forward from the position. After a step that drains, this is for
            the decoder drained, which must seek: forward, or back to the
            keyframe at or before the position to resume (the frames handed
            out already are dropped).
        decoded: pts of the frames decoded in this step, in time order, from
            the keyframe sought (else the frame after the position) up to
            `frame`. Those before `frame` serve no target here: the decoder
            may drop the non-reference ones among them.
        drain: feed no packet after `frame`'s and drain the decoder.
        seek_undrained: the seek when the previous step's drain came too late
            and the decoder is still being fed (min-skip rule alone); `seek`
            itself unless the previous step drains.
    """

    frame: int
    targets: tuple[int, ...]
    seek: int | None
    decoded: tuple[int, ...]
    drain: bool
    seek_undrained: int | None


def drain_point(keyframe_ticks: np.ndarray, tick: int, next_tick: int | None) -> int | None:
    """The default drain rule: `tick` when a keyframe after it leads to `next_tick` or nothing follows.

    `tick` is the pts of a needed frame, `next_tick` that of the next needed
    frame (None when there is none). Returns the pts after whose packet to
    drain, or None: decode on.
    """
    if next_tick is None:
        return tick
    i = int(np.searchsorted(keyframe_ticks, next_tick, side="right")) - 1
    return tick if i >= 0 and int(keyframe_ticks[i]) > tick else None


def _keyframe_to_seek(
    frame_ticks: np.ndarray,
    keyframe_ticks: np.ndarray,
    target_tick: int,
    position: int | None,
    floor: int,
    drained: bool,
    min_skip_frames: int,
) -> int | None:
    """Index of the keyframe to seek to before decoding towards `target_tick`, or None: decode forward.

    The last keyframe at or before the target, when it lies after `position`
    and after keyframe `floor` (the one last sought to) with at least
    `min_skip_frames` frames in between; any number once `drained`.
    """
    i = int(np.searchsorted(keyframe_ticks, target_tick, side="right")) - 1
    if i <= floor:  # floor 0 at first: decoding starts at keyframe 0
        return None
    keyframe = int(keyframe_ticks[i])
    if position is not None and keyframe <= position:
        return None
    if drained:
        return i
    here = int(np.searchsorted(frame_ticks, position, side="right")) if position is not None else 0
    skipped = int(np.searchsorted(frame_ticks, keyframe, side="left")) - here
    return i if skipped >= min_skip_frames else None


def plan_decode(
    frame_ticks: Sequence[int] | np.ndarray,
    keyframe_ticks: Sequence[int] | np.ndarray,
    target_ticks: Sequence[int] | np.ndarray,
    *,
    min_skip_frames: int = MIN_SKIP_FRAMES,
    drain_rule: DrainRule | None = None,
) -> list[Step]:
    """The steps that decode the frame shown at each target (see the module docstring for the rules).

    Args:
        frame_ticks: pts of every frame, ascending, unique (ticks).
        keyframe_ticks: pts of the keyframes, ascending, a subset of `frame_ticks`.
        target_ticks: the times to show, in any order (ticks; see `timeline.target_ticks`).
        min_skip_frames: the fewest frames a seek must skip.
        drain_rule: where to drain after a needed frame; default `drain_point`
            on these keyframes. The PyAV decoder passes its own method, which
            a test can replace to force or forbid drains.

    Returns:
        One Step per distinct needed frame, in time order; every target is in
        exactly one. Empty without frames or targets.
    """
    frames = np.asarray(frame_ticks, dtype=np.int64)
    keyframes = np.asarray(keyframe_ticks, dtype=np.int64)
    targets = np.asarray(target_ticks, dtype=np.int64)
    if not len(frames) or not len(targets):
        return []
    drain_rule = drain_rule or partial(drain_point, keyframes)
    order = np.argsort(targets, kind="stable")
    wanted = wanted_ticks(frames, targets[order])
    starts = np.flatnonzero(np.r_[True, wanted[1:] != wanted[:-1]])  # each needed frame's first target
    ends = np.r_[starts[1:], len(order)]
    last = int(frames[-1])
    steps: list[Step] = []
    position, floor, drained = None, 0, False
    for lo, hi in zip(starts, ends):
        frame, target = int(wanted[lo]), int(targets[order[lo]])
        seek = undrained = _keyframe_to_seek(frames, keyframes, target, position, floor, False, min_skip_frames)
        if drained:
            seek = _keyframe_to_seek(frames, keyframes, target, position, floor, True, min_skip_frames)
            if seek is None:  # resume: back to the keyframe at or before the position
                seek = int(np.searchsorted(keyframes, position, side="right")) - 1
        if seek is not None:
            floor = seek
            first = int(np.searchsorted(frames, keyframes[seek], side="left"))
        else:
            first = 0 if position is None else int(np.searchsorted(frames, position, side="right"))
        upto = int(np.searchsorted(frames, frame, side="right"))
        following = int(wanted[hi]) if hi < len(order) else None
        # A drain that no seek forward follows needs a keyframe to go back to.
        can_resume = following is None or (len(keyframes) > 0 and int(keyframes[0]) <= frame)
        drain = last not in (frame, following) and can_resume and drain_rule(frame, following) is not None
        targets_served = tuple(sorted(int(i) for i in order[lo:hi]))
        steps.append(Step(frame, targets_served, seek, tuple(int(t) for t in frames[first:upto]), drain, undrained))
        position, drained = frame, drain
    return steps
