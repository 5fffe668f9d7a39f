"""Exact frame decoding: every target gets the frame shown at its time.

Expected frames are computed from the pts each fixture was written with
(last pts <= t), independently of the decoder, and compared with the index
each decoded frame carries in its pixels.
"""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image

from hfs.pipeline import decode
from hfs.pipeline.decode import DecodeError, apply_rotation, decode_frames
from hfs.pipeline.decode import ffmpeg as ffmpeg_backend
from hfs.pipeline.decode import iter_frames, probe, segment_centre_timestamps
from hfs.pipeline.demo.videos import draw_frame_index, read_frame_index, shape, write_index_video, write_scene_video


def _probe_targets(video) -> np.ndarray:
    """Targets that stress the rule: segment centres, exact frame starts, ±0.1 ms around them, both ends."""
    pts = video.pts
    end = pts[-1] + 0.04
    near = np.concatenate([pts, pts[1:] - 1e-4, pts + 1e-4])
    picks = np.random.default_rng(0).choice(near, size=min(len(near), 90), replace=False)
    return np.concatenate([segment_centre_timestamps(0.0, end, 64), picks, [0.0, -0.5, end + 3.0]])


def _check_exact(video, targets: np.ndarray, backend: str = "pyav") -> list:
    """Decode `targets`, assert each got the expected frame; returns the yielded items."""
    items = list(iter_frames(video.path, targets, backend=backend))
    got = {}
    for item in items:
        index = read_frame_index(item.rgb)
        assert item.pts == pytest.approx(video.pts[index], abs=1e-6)
        for target in item.targets:
            got[target] = index
    expected = {i: video.expected_index(t) for i, t in enumerate(targets)}
    wrong = {i: (targets[i], got.get(i), e) for i, e in expected.items() if got.get(i) != e}
    assert not wrong, f"{len(wrong)} targets got the wrong frame (t, got, expected): {list(wrong.values())[:5]}"
    assert [item.pts for item in items] == sorted({item.pts for item in items}), "frames not in time order or repeated"
    assert len(items) == len(set(expected.values()))
    return items


# --- the synthetic code itself ----------------------------------------------------


def test_frame_index_survives_resize_crop_and_jpeg():
    frame = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    for index in (0, 1, 12345, 2**16 - 1):
        image = Image.fromarray(draw_frame_index(frame.copy(), index))
        image = image.resize((398, 224), Image.BILINEAR).crop((87, 0, 311, 224))  # shortest side 224, centre crop
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=60)
        assert read_frame_index(np.asarray(Image.open(buffer))) == index


def test_frame_index_rejects_frames_without_code():
    with pytest.raises(ValueError, match="no frame index"):
        read_frame_index(np.full((120, 160, 3), 90, np.uint8))


def test_scene_video_shows_the_requested_scenes(tmp_path):
    path = tmp_path / "scenes.mp4"
    pts = write_scene_video(path, [(5, (255, 0, 0)), (5, shape("circle", (0, 0, 255), (255, 255, 255)))], fps=10)
    assert len(pts) == 10
    result = decode_frames(path, n=2)
    red, circle = result.frames
    assert red.mean(axis=(0, 1)) == pytest.approx([255, 0, 0], abs=25)
    assert circle[60, 80] == pytest.approx([0, 0, 255], abs=40)  # centre: the blue circle
    assert circle[2, 2] == pytest.approx([255, 255, 255], abs=40)  # corner: the white background


def test_segment_centre_timestamps():
    assert segment_centre_timestamps(10.0, 14.0, 4).tolist() == [10.5, 11.5, 12.5, 13.5]
    assert segment_centre_timestamps(0.0, 1.0, 128).dtype == np.float64


# --- exactness ----------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["cfr_video", "long_gop_video", "short_gop_video", "vfr_video", "ts_video"])
def test_every_target_gets_the_frame_shown_at_its_time(fixture, request):
    video = request.getfixturevalue(fixture)
    _check_exact(video, _probe_targets(video))


def test_probe_reports_stream_facts(short_gop_video, ts_video, vfr_video):
    info = probe(short_gop_video.path)
    assert (info.width, info.height, info.n_frames, info.codec) == (160, 120, 250, "h264")
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(10.0)
    assert info.keyframes[:3] == pytest.approx([0.0, 1.0, 2.0])
    assert probe(ts_video.path).start_time > 0  # MPEG-TS clocks do not start at zero
    assert probe(vfr_video.path).frame_pts == pytest.approx(vfr_video.pts)


def _count_seeks(monkeypatch) -> list[dict]:
    """Record each PyAV decoder's stats (seeks, where they landed) as it closes."""
    stats: list[dict] = []
    original = decode._PyAVDecoder.close
    monkeypatch.setattr(decode._PyAVDecoder, "close", lambda self: (stats.append(dict(self.stats)), original(self))[1])
    return stats


def test_gop_aware_strategy_seeks_only_past_keyframes(short_gop_video, long_gop_video, monkeypatch):
    stats = _count_seeks(monkeypatch)
    _check_exact(short_gop_video, np.array([0.5, 3.5, 6.5, 9.5]))  # one target in every third GOP
    _check_exact(short_gop_video, segment_centre_timestamps(0, 10, 128))  # dense: next keyframe always close
    _check_exact(long_gop_video, np.array([1.0, 4.0, 8.0]))  # all inside the first GOP
    sparse, dense, inside = stats
    assert sparse["seeks"] == 3  # to the keyframes at 3 s, 6 s and 9 s, landing exactly
    assert sparse["frames"] < 4 * 25 + 10
    assert dense["seeks"] == 0 and inside["seeks"] == 0
    assert all(s["landed_early"] == s["landed_late"] == 0 for s in stats)


def test_decoder_frees_ffmpeg_state_without_the_garbage_collector(short_gop_video):
    """A finished decode leaves no decoder, generator or container for the cyclic GC to
    free later (possibly in a forked child, where FFmpeg's threads do not exist)."""
    import gc
    import inspect

    gc.collect()
    gc.disable()
    try:
        decode.decode_frames(short_gop_video.path, n=16, backend="pyav")  # seeks: one generator per seek
        left = [o for o in gc.get_objects()
                if isinstance(o, decode._PyAVDecoder)
                or (inspect.isgenerator(o) and o.gi_code.co_name == "_decode_from_here")]
    finally:
        gc.enable()
    assert left == []


def test_seeks_land_on_the_keyframe_in_vfr_mp4(vfr_video, monkeypatch):
    # MP4 seeks on edit-list-shifted dts: seeking to a keyframe's pts would land a GOP early.
    stats = _count_seeks(monkeypatch)
    _check_exact(vfr_video, vfr_video.pts[[5, 30, 55, 79]] + 1e-3)
    assert stats[0]["seeks"] >= 2 and stats[0]["landed_early"] == stats[0]["landed_late"] == 0


def test_skipping_unneeded_frames_is_bit_exact(long_gop_video, monkeypatch):
    stats = _count_seeks(monkeypatch)
    skipped = decode_frames(long_gop_video.path, n=20)
    monkeypatch.setattr(decode._PyAVDecoder, "skip_unneeded", lambda self, ticks: False)
    full = decode_frames(long_gop_video.path, n=20)
    assert all(np.array_equal(a, b) for a, b in zip(skipped.frames, full.frames))
    assert stats[0]["frames"] < stats[1]["frames"]  # non-reference B-frames were dropped


def test_assigner_hands_out_a_known_frame_without_waiting_for_the_next():
    targets = np.array([5, 12, 12, 30])  # ticks; the frames come at 0, 4, 8, 10, 20, 31
    pushes = [("f0", 0), ("f4", 4), ("f8", 8), ("f10", 10), ("f20", 20), ("f31", 31)]
    waiting = decode._Assigner(targets)
    assert [waiting.push(*p) for p in pushes] == [[], [], [("f4", 4, [0])], [], [("f10", 10, [1, 2])], [("f20", 20, [3])]]
    known = decode._Assigner(targets, known=np.array([4, 10, 10, decode.KNOWN_NONE]))
    assert [known.push(*p) for p in pushes] == [[], [("f4", 4, [0])], [], [("f10", 10, [1, 2])], [], [("f20", 20, [3])]]
    assert known.done


def test_the_decoder_is_drained_before_a_seek_not_fed_more_packets(short_gop_video, long_gop_video, monkeypatch):
    """B-frame reordering and frame threads hold frames back; pushing the needed frame out
    with more packets decodes frames nobody needs, draining the decoder does not."""
    stats = _count_seeks(monkeypatch)
    sparse = np.array([0.5, 3.5, 6.5, 9.5])  # one target in every third one-second GOP
    drained = _check_exact(short_gop_video, sparse)
    monkeypatch.setattr(decode._PyAVDecoder, "drain_point", lambda self, tick, next_tick: None)
    fed = _check_exact(short_gop_video, sparse)
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(drained, fed))
    assert stats[0]["drains"] == 4 and stats[1]["drains"] == 0  # before each of the 3 seeks, and at the end
    assert stats[0]["seeks"] == stats[1]["seeks"] == 3
    assert stats[0]["packets"] < stats[1]["packets"]


def test_a_drain_that_no_seek_follows_resumes_exactly(long_gop_video, monkeypatch):
    # Drain after every needed frame, inside one GOP where no seek can follow: each time the
    # decoder must go back to the keyframe and carry on after the frames it handed out.
    stats = _count_seeks(monkeypatch)
    monkeypatch.setattr(decode._PyAVDecoder, "drain_point", lambda self, tick, next_tick: tick)
    _check_exact(long_gop_video, np.array([0.5, 1.5, 3.0, 5.0]))
    assert stats[0]["resumes"] == 3 and stats[0]["seeks"] == 3


def test_window_start_end(short_gop_video):
    result = decode_frames(short_gop_video.path, n=32, start=2.0, end=5.0)
    assert result.timestamps[0] == pytest.approx(2.0 + 0.5 * 3.0 / 32)
    got = [read_frame_index(frame) for frame in result.frames]
    assert got == [short_gop_video.expected_index(t) for t in result.timestamps]
    assert np.all((result.pts >= 2.0) & (result.pts < 5.0))


def test_window_past_the_end_is_an_error(cfr_video):
    with pytest.raises(DecodeError, match=r"window start 30.0s is past the end of the video \(4.0s\)"):
        decode_frames(cfr_video.path, start=30.0)


# --- short videos ------------------------------------------------------------


def test_fewer_frames_than_targets_repeat_the_nearest(short_video):
    result = decode_frames(short_video.path, n=128)
    assert result.distinct == 10
    assert len(result.frames) == 128
    got = [read_frame_index(frame) for frame in result.frames]
    assert got == [short_video.expected_index(t) for t in result.timestamps]
    assert result.frames[0] is result.frames[1]  # repeats share one array
    assert result.frame_ids.tolist() == sorted(result.frame_ids.tolist())


def test_one_frame_video(tmp_path):
    path = tmp_path / "one.mkv"
    write_index_video(path, 1)
    result = decode_frames(path, n=128)
    assert result.distinct == 1 and result.truncated == 0
    assert {read_frame_index(frame) for frame in result.frames} == {0}


# --- broken inputs ------------------------------------------------------------


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    for backend in ("auto", "pyav", "ffmpeg"):
        with pytest.raises(DecodeError, match="^no video stream$"):
            decode_frames(path, backend=backend)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(DecodeError, match=r"^file is empty \(0 bytes\)$"):
        decode_frames(path)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    for backend in ("auto", "pyav", "ffmpeg"):
        with pytest.raises(DecodeError, match="^cannot open: Invalid data found when processing input$") as err:
            decode_frames(path, backend=backend)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("backend", ["pyav", "ffmpeg"])
def test_truncated_file_decodes_what_is_there(tmp_path, backend):
    full = tmp_path / "full.mkv"
    pts = write_index_video(full, 100, fps=25, gop=10)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    result = decode_frames(cut, n=50, backend=backend)
    got = np.array([read_frame_index(frame) for frame in result.frames])
    last_good = got.max()
    assert 20 < last_good < 90
    early = result.timestamps < pts[last_good] - 0.2  # well before the cut: exact
    expected = np.searchsorted(pts, result.timestamps, side="right") - 1
    assert np.array_equal(got[early], expected[early])
    late = result.timestamps > pts[last_good] + 0.04
    assert late.sum() > 10 and np.all(got[late] == last_good)
    assert result.truncated == late.sum()
    assert result.info.duration == pytest.approx(4.0)  # the header still says 4 s


# --- geometry ---------------------------------------------------------------


def test_odd_size_and_max_side(tmp_path):
    path = tmp_path / "odd.mp4"
    write_index_video(path, 20, size=(161, 97))
    result = decode_frames(path, n=8)
    assert result.frames[0].shape == (97, 161, 3)
    assert [read_frame_index(f) for f in result.frames] == [int(t * 25) for t in result.timestamps]
    for backend in ("pyav", "ffmpeg"):
        small = decode_frames(path, n=4, max_side=64, backend=backend)
        assert small.frames[0].shape == (39, 64, 3)


def test_apply_rotation_turns_counter_clockwise():
    image = np.arange(6).reshape(2, 3)[..., None]
    assert apply_rotation(image, 90)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]
    assert apply_rotation(image, -90)[..., 0].tolist() == apply_rotation(image, 270)[..., 0].tolist()
    assert apply_rotation(image, 0) is image


def test_rotation_metadata_is_applied(rotated_video):
    info = probe(rotated_video.path)
    assert (info.rotation, info.width, info.height) == (90, 120, 160)
    frames = {}
    for backend in ("pyav", "ffmpeg"):
        result = decode_frames(rotated_video.path, n=6, backend=backend)
        assert result.frames[0].shape == (160, 120, 3)
        # Turning the displayed frame back (clockwise) restores the stored code.
        got = [read_frame_index(apply_rotation(frame, -90)) for frame in result.frames]
        assert got == [rotated_video.expected_index(t) for t in result.timestamps]
        frames[backend] = np.stack(result.frames).astype(np.int16)
    assert np.abs(frames["pyav"] - frames["ffmpeg"]).mean() < 3


# --- backends -----------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["cfr_video", "vfr_video"])
def test_ffmpeg_backend_is_exact_too(fixture, request):
    video = request.getfixturevalue(fixture)
    _check_exact(video, _probe_targets(video), backend="ffmpeg")


def test_ffmpeg_and_pyav_give_the_same_frames(cfr_video):
    a = decode_frames(cfr_video.path, n=16, backend="pyav")
    b = decode_frames(cfr_video.path, n=16, backend="ffmpeg")
    assert (a.backend, b.backend) == ("pyav", "ffmpeg")
    assert np.array_equal(a.pts, b.pts)
    assert np.abs(np.stack(a.frames).astype(np.int16) - np.stack(b.frames)).mean() < 3


def test_ffmpeg_backend_takes_128_distinct_frames(long_gop_video):
    """The paper's N = 128 distinct frames through the fallback: a flat `+` chain of 128 select
    terms was more than ffmpeg's expression parser takes ("Cannot allocate memory")."""
    result = decode_frames(long_gop_video.path, n=128, backend="ffmpeg")
    assert result.backend == "ffmpeg" and len(set(result.frame_ids)) == 128
    assert [read_frame_index(f) for f in result.frames] == [long_gop_video.expected_index(t) for t in result.timestamps]
    expression = ffmpeg_backend._select_by_number(list(range(1000)))
    depth = deepest = 0
    for c in expression:
        depth += (c == "(") - (c == ")")
        deepest = max(deepest, depth)
    assert deepest <= 9 and expression.count("+") == 999  # log2(1000 / 8) + 1 for eq(...), not 1000
    assert all(f"eq(n\\,{k})" in expression for k in (0, 500, 999))


def test_auto_falls_back_to_ffmpeg_when_pyav_cannot_open(cfr_video, monkeypatch, caplog):
    def refuse(path, threaded=True):
        raise DecodeError("cannot open: simulated PyAV failure")

    monkeypatch.setattr(decode, "_open_pyav", refuse)
    result = decode_frames(cfr_video.path, n=8)
    assert result.backend == "ffmpeg"
    assert [read_frame_index(f) for f in result.frames] == [cfr_video.expected_index(t) for t in result.timestamps]
    assert "falling back to the ffmpeg binary" in caplog.text
    assert {item.backend for item in iter_frames(cfr_video.path, [0.5, 1.5])} == {"ffmpeg"}


def test_auto_falls_back_when_pyav_opens_but_cannot_decode(cfr_video, monkeypatch):
    def broken(*args, **kwargs):
        raise DecodeError("no decodable video frames")
        yield  # pragma: no cover - makes this a generator like the real one

    monkeypatch.setattr(decode, "_iter_pyav", broken)
    assert decode_frames(cfr_video.path, n=4).backend == "ffmpeg"
    with pytest.raises(DecodeError, match="no decodable video frames"):
        decode_frames(cfr_video.path, n=4, backend="pyav")


def test_stream_without_timestamps(tmp_path):
    path = tmp_path / "raw.h264"  # Annex B bitstream: packets carry no pts at all
    write_index_video(path, 50, fps=25)
    for backend in ("pyav", "ffmpeg"):
        result = decode_frames(path, n=10, backend=backend)
        assert [read_frame_index(f) for f in result.frames] == [int(t * 25) for t in result.timestamps]


def test_ffmpeg_error_reason_is_the_last_stderr_line():
    stderr = b"ffmpeg version n9\n[in#0 @ 0x1] Error opening input\nError opening input files: Invalid data found when processing input\n"
    assert ffmpeg_backend.error_reason(stderr) == "cannot open: Invalid data found when processing input"
    assert ffmpeg_backend.error_reason(b"x.mp4: Permission denied\n", "x.mp4") == "cannot open: Permission denied"


def test_ffmpeg_header_parser_reads_rotation_and_rate():
    stderr = (
        "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'b.mp4':\n"
        "  Duration: 00:01:04.50, start: 0.033000, bitrate: 19 kb/s\n"
        "  Stream #0:0[0x1](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo\n"
        "  Stream #0:1[0x2](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080 [SAR 1:1 DAR 16:9], 29.97 fps, 30 tbr\n"
        "    Side data:\n"
        "      displaymatrix: rotation of -90.00 degrees\n"
        "Stream mapping:\n"
    )
    header = ffmpeg_backend.parse_header(stderr)
    assert header == {
        "codec": "h264", "width": 1920, "height": 1080, "fps": 29.97, "rotation": 270,
        "duration": 64.5, "start": 0.033,
    }


def test_ffprobe_json_header(monkeypatch):
    import ffmpeg

    answer = {
        "streams": [
            {"codec_type": "audio", "codec_name": "aac"},
            {
                "codec_type": "video", "codec_name": "hevc", "width": 1920, "height": 1080,
                "avg_frame_rate": "30000/1001", "duration": "12.5", "tags": {"rotate": "90"},
            },
        ],
        "format": {"duration": "12.6", "start_time": "0.000000"},
    }
    monkeypatch.setattr(ffmpeg, "probe", lambda path, cmd: answer)
    header = ffmpeg_backend._ffprobe_header("x.mp4", "ffprobe")
    assert header == {
        "codec": "hevc", "width": 1920, "height": 1080, "fps": pytest.approx(29.97, abs=1e-3),
        "rotation": 270, "duration": 12.5, "start": 0.0,  # "rotate": 90 is clockwise, i.e. 270 counter-clockwise
    }
