"""The seek/drain plan as a pure function of ticks: no video, every expectation worked out by hand.

Ticks here are frame numbers for constant-rate clips (time base = one frame
interval) and milliseconds for the variable-rate one. A `Step` says: seek to
keyframe `seek` first (or decode forward), decode the frames `decoded`, hand
`frame` to `targets`, then drain or not; `seek_undrained` is the seek when
the previous step's drain came too late.
"""

from __future__ import annotations

import numpy as np
import pytest

from hfs.pipeline.decode.plan import MIN_SKIP_FRAMES, Step, drain_point, plan_decode

SAME = object()


def step(frame, targets, decoded, *, seek=None, drain=False, seek_undrained=SAME) -> Step:
    """A Step with `seek_undrained` equal to `seek` unless given."""
    undrained = seek if seek_undrained is SAME else seek_undrained
    return Step(frame=frame, targets=tuple(targets), seek=seek, decoded=tuple(decoded), drain=drain, seek_undrained=undrained)


CFR_1S = (np.arange(100), [0, 25, 50, 75])  # 4 s at 25 fps, a keyframe every second
LONG_GOP = (np.arange(300), [0, 250])  # 12 s at 25 fps, the encoder's 250-frame GOP


def test_sparse_targets_on_1s_gop_seek_and_drain_before_each_seek():
    frames, keys = CFR_1S
    assert plan_decode(frames, keys, [12, 87]) == [
        # decode 0..12; keyframe 75 lies between 12 and 87, so a seek follows: drain
        step(12, [0], range(0, 13), drain=True),
        # drained: seek to keyframe 3 (pts 75); fed, it skips 75 - 13 = 62 >= 8 frames: the same seek
        step(87, [1], range(75, 88), seek=3, drain=True),  # nothing follows: drain at the end
    ]


def test_long_gop_decodes_forward_without_seeking():
    frames, keys = LONG_GOP
    assert plan_decode(frames, keys, [25, 100, 200]) == [
        step(25, [0], range(0, 26)),  # no keyframe after 25 leads to 100: no drain
        step(100, [1], range(26, 101)),
        step(200, [2], range(101, 201), drain=True),  # the last needed frame: drain, frames 201..299 never decoded
    ]


def test_dense_targets_across_a_keyframe_seek_only_when_drained():
    frames, keys = np.arange(50), [0, 25]
    assert plan_decode(frames, keys, [22, 24, 26, 28]) == [
        step(22, [0], range(0, 23)),
        step(24, [1], [23, 24], drain=True),  # keyframe 25 lies between 24 and 26
        # Drained, the decoder must seek (to keyframe 1 at 25). If the drain came too late
        # (packet 24 already sent), skipping 25 - 25 = 0 frames is not worth a seek.
        step(26, [2], [25, 26], seek=1, seek_undrained=None),
        step(28, [3], [27, 28], drain=True),
    ]


def test_min_skip_frames_decides_a_seek_when_not_drained():
    frames, keys = np.arange(50), [0, 25]
    plan = plan_decode(frames, keys, [17, 30])
    assert plan[0] == step(17, [0], range(0, 18), drain=True)
    assert plan[1] == step(30, [1], range(25, 31), seek=1, drain=True, seek_undrained=None)  # 25 - 18 = 7 < 8
    assert MIN_SKIP_FRAMES == 8
    assert plan_decode(frames, keys, [17, 30], min_skip_frames=7)[1].seek_undrained == 1  # 7 >= 7


def test_variable_frame_rate():
    # milliseconds; irregular gaps of 7 ms .. 400 ms
    frames = [0, 7, 27, 67, 167, 567, 574, 594, 634, 734, 1134]
    keys = [0, 567]
    assert plan_decode(frames, keys, [30, 600, 1000]) == [
        step(27, [0], [0, 7, 27], drain=True),  # 30 ms shows 27; keyframe 567 leads to 594
        # drained: seek to 567; fed, it would skip only frames 67 and 167 (2 < 8)
        step(594, [1], [567, 574, 594], seek=1, seek_undrained=None),
        # 1000 ms shows 734, not the last frame (1134); keyframe 567 was sought already
        step(734, [2], [634, 734], drain=True),
    ]


def test_targets_before_the_first_and_past_the_last_frame():
    frames, keys = np.arange(10), [0]
    assert plan_decode(frames, keys, [-5, 3, 50, 9]) == [
        step(0, [0], [0]),  # before the first frame: the first frame
        step(3, [1], [1, 2, 3]),  # the next needed frame is the last one: no drain on the way there
        step(9, [2, 3], range(4, 10)),  # past the end, and exactly at it: the last frame, no drain
    ]


def test_fewer_frames_than_targets_and_duplicates():
    frames, keys = [0, 10, 20, 30], [0]
    targets = [1, 4, 8, 12, 12, 15, 19, 23, 26, 33]
    assert plan_decode(frames, keys, targets) == [
        step(0, [0, 1, 2], [0]),
        step(10, [3, 4, 5, 6], [10]),
        step(20, [7, 8], [20]),
        step(30, [9], [30]),
    ]


def test_unsorted_duplicate_targets_get_one_step_per_frame():
    frames, keys = CFR_1S
    assert plan_decode(frames, keys, [50, 12, 12, 50, 87]) == [
        step(12, [1, 2], range(0, 13), drain=True),
        step(50, [0, 3], [50], seek=2, drain=True),  # keyframe 2 is frame 50 itself; fed: 50 - 13 = 37 >= 8
        step(87, [4], range(75, 88), seek=3, drain=True),  # fed: 75 - 51 = 24 >= 8
    ]


def test_no_drain_on_the_way_to_the_last_frame():
    # The last frame is handed out only at the end of the stream (truncation check).
    frames, keys = CFR_1S
    assert plan_decode(frames, keys, [12, 120]) == [
        step(12, [0], range(0, 13)),  # keyframe 75 lies between, but the next frame is the last one
        step(99, [1], range(75, 100), seek=3),  # fed: 75 - 13 = 62 >= 8
    ]


def test_a_drain_that_no_seek_follows_resumes_from_the_keyframe_before():
    frames, keys = LONG_GOP
    always = plan_decode(frames, keys, [12, 37], drain_rule=lambda tick, next_tick: tick)
    assert always == [
        step(12, [0], range(0, 13), drain=True),
        # No keyframe after 12 leads to 37: seek back to keyframe 0 and decode 0..37 again
        # (0..12 are dropped as handed out already); not drained, the decoder just goes on.
        step(37, [1], range(0, 38), seek=0, drain=True, seek_undrained=None),
    ]
    never = plan_decode(frames, keys, [12, 37], drain_rule=lambda tick, next_tick: None)
    assert never == [step(12, [0], range(0, 13)), step(37, [1], range(13, 38))]


def test_a_drain_needs_a_keyframe_to_come_back_to():
    # Frames 0..9 precede the first keyframe: after a drain there, nothing to resume from.
    frames, keys = np.arange(40), [10, 30]
    assert drain_point(np.array(keys), 5, 35) == 5  # the rule alone would drain (keyframe 30 leads to 35)
    assert plan_decode(frames, keys, [5, 35]) == [
        step(5, [0], range(0, 6)),
        step(35, [1], range(30, 36), seek=1, drain=True),  # fed: 30 - 6 = 24 >= 8
    ]


def test_decoding_starts_at_the_first_keyframe_so_it_is_never_sought():
    # Ten frames precede keyframe 0 (at 10): the decoder starts before it and decodes through,
    # although a seek there would skip 10 >= 8 frames.
    assert plan_decode(np.arange(40), [10, 30], [15]) == [step(15, [0], range(0, 16), drain=True)]


def test_drain_point_rule():
    keys = np.array([0, 25, 50])
    assert drain_point(keys, 24, 26) == 24  # keyframe 25 between
    assert drain_point(keys, 25, 49) is None  # keyframe 25 is the needed frame itself: decode on
    assert drain_point(keys, 30, 60) == 30
    assert drain_point(keys, 30, None) == 30  # nothing follows
    assert drain_point(np.array([], dtype=np.int64), 3, 9) is None


def test_empty_inputs():
    assert plan_decode([], [], [1, 2]) == []
    assert plan_decode(np.arange(10), [0], []) == []


@pytest.mark.parametrize("seed", range(20))
def test_every_target_gets_the_frame_shown_at_its_time(seed):
    rng = np.random.default_rng(seed)
    frames = np.unique(rng.integers(0, 5000, rng.integers(1, 400)))
    keys = np.unique(np.r_[frames[0], rng.choice(frames, rng.integers(0, 12))])
    targets = rng.integers(-100, 5200, rng.integers(1, 130))
    plan = plan_decode(frames, keys, targets)
    served = sorted(t for s in plan for t in s.targets)
    assert served == list(range(len(targets)))  # each target exactly once
    assert [s.frame for s in plan] == sorted({s.frame for s in plan})  # each needed frame once, in time order
    for s in plan:
        for t in s.targets:
            shown = frames[frames <= targets[t]]
            assert s.frame == (shown[-1] if len(shown) else frames[0])  # last frame with pts <= t, else the first
        assert s.decoded[-1] == s.frame and list(s.decoded) == sorted(s.decoded)
        if s.seek is not None:
            assert s.decoded[0] == keys[s.seek]  # decoding starts at the keyframe sought
    for before, after in zip(plan, plan[1:]):
        if not before.drain:
            assert after.seek == after.seek_undrained  # only a drain makes the decoder's state matter
        if before.drain:
            assert after.seek is not None  # a drained decoder takes no packets until it seeks
        if after.seek is None:
            assert after.decoded[0] > before.frame  # decoding forward: nothing decoded twice
    assert not plan[-1].drain or plan[-1].frame != frames[-1]  # never a drain at the last frame
