"""The decoder's resources: the ffmpeg fallback streams its frames, and the number of FFmpeg
threads is the caller's to choose (one decoding process per core must not start a thread
per core each)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from hfs.pipeline import decode
from hfs.pipeline.decode import iter_frames, probe, segment_centre_timestamps
from hfs.pipeline.decode.pyav import open_container
from hfs.pipeline.demo.videos import read_frame_index, write_index_video


@pytest.fixture(scope="module")
def many_frames(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "v.mp4"
    write_index_video(path, 96, fps=24, size=(320, 240), gop=12)
    return path


def test_the_ffmpeg_backend_streams_frames_instead_of_holding_them_all(many_frames):
    times = segment_centre_timestamps(0.0, 4.0, 64)  # 64 distinct frames, 230 KB each: 14.7 MB in all (held: ~30 MB peak)
    frame_bytes = 320 * 240 * 3
    tracemalloc.start()
    try:
        got = []
        for item in iter_frames(many_frames, times, backend="ffmpeg"):
            got.append(read_frame_index(item.rgb))
            del item
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [int(np.floor(t * 24 + 1e-6)) for t in times]  # still exact
    assert peak < 25 * frame_bytes, f"peak {peak / 2**20:.1f} MB: the frames were held, not streamed"


def test_the_ffmpeg_process_ends_when_the_caller_stops_early(many_frames, monkeypatch):
    import ffmpeg

    procs = []
    run_async = ffmpeg.nodes.OutputStream.run_async

    def spy(self, *args, **kwargs):
        procs.append(run_async(self, *args, **kwargs))
        return procs[-1]

    monkeypatch.setattr(ffmpeg.nodes.OutputStream, "run_async", spy)
    frames = iter_frames(many_frames, segment_centre_timestamps(0.0, 4.0, 64), backend="ffmpeg")
    next(frames)
    frames.close()
    assert procs and procs[0].poll() is not None


def test_decoding_threads_are_set_per_call(many_frames):
    container, stream = open_container(many_frames, threads=1)
    try:
        assert stream.codec_context.thread_count == 1
    finally:
        container.close()
    container, stream = open_container(many_frames)
    try:
        assert stream.codec_context.thread_count == 0  # FFmpeg's own choice: one per core
    finally:
        container.close()
    info = probe(many_frames)
    times = segment_centre_timestamps(0.0, 4.0, 8)
    for backend in ("pyav", "ffmpeg"):
        a = [f.rgb for f in iter_frames(many_frames, times, backend=backend, info=info if backend == "pyav" else None, threads=1)]
        b = [f.rgb for f in iter_frames(many_frames, times, backend=backend)]
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_max_side_scales_in_the_conversion(many_frames):
    times = segment_centre_timestamps(0.0, 4.0, 4)
    for backend in ("pyav", "ffmpeg"):
        frames = list(decode.iter_frames(many_frames, times, backend=backend, max_side=160))
        assert {f.rgb.shape for f in frames} == {(120, 160, 3)}
        assert [read_frame_index(f.rgb) for f in frames] == [int(np.floor(t * 24 + 1e-6)) for t in times]
