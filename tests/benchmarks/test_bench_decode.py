"""The decode benchmark's own logic: its decoders and its frame-accuracy check
on a small indexed video, and the ratio column of its table."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

import pytest

from hfs.pipeline.demo.videos import write_index_video

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_decode  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[str, int]:
    path = tmp_path_factory.mktemp("bench") / "clip.mp4"
    n = 150  # 5 s at the benchmark's 30 fps: 128 targets, some frames serve two
    write_index_video(path, n, fps=bench_decode.FPS, size=(96, 72))
    return str(path), n


@pytest.mark.parametrize("decoder", ["hfs", "naive_pyav"])
def test_worker_decodes_the_exact_frames(clip, decoder):
    path, n = clip
    result = bench_decode.run_worker(decoder, path, n)
    assert result["accuracy"] == 1.0
    assert result["shape"] == [72, 96, 3]
    # CPU seconds of this run alone: some, and no more than every core busy for the whole run
    # (the process's total since it started, which includes the imports, is far more).
    assert result["seconds"] > 0
    assert 0 < result["cpu_s"] <= result["seconds"] * os.cpu_count() + 0.01
    # Page faults, counted over this run alone: 128 output frames of 96x72x3 need fresh
    # memory, but a few times their pages at most (the process's total is tens of thousands).
    # The file was read beforehand, so no more major faults (pages read from disk) than minor.
    output_pages = bench_decode.N_TARGETS * 72 * 96 * 3 / resource.getpagesize()
    assert isinstance(result["minflt"], int) and isinstance(result["majflt"], int)
    assert 0 < result["minflt"] < 20 * output_pages
    assert 0 <= result["majflt"] <= result["minflt"]


def test_accuracy_check_catches_a_wrong_frame(clip, monkeypatch):
    """A decoder one frame late must not score 100%: the check reads the pixels."""
    path, n = clip
    naive = bench_decode.decode_naive_pyav

    def late(p, targets):
        return naive(p, targets + 1.0 / bench_decode.FPS)

    monkeypatch.setattr(bench_decode, "decode_naive_pyav", late)
    assert bench_decode.run_worker("naive_pyav", path, n)["accuracy"] < 0.1


def test_ratios_and_table():
    rows = [
        {"video": "v", "decoder": "hfs", "seconds": 3.0, "cpu_s": 2.0, "accuracy": 1.0},
        {"video": "v", "decoder": "naive_pyav", "seconds": 6.0, "cpu_s": 5.0, "accuracy": 1.0},
        {"video": "v", "decoder": "decord", "seconds": 2.0, "cpu_s": 2.0, "accuracy": 0.5},
        {"video": "v", "decoder": "torchcodec", "error": "pip install torchcodec failed"},
    ]
    bench_decode.add_ratios(rows)
    assert rows[0]["ratio"] == pytest.approx(1.5)  # fastest peer: decord, 2 s
    assert rows[0]["ratio_exact"] == pytest.approx(0.5)  # fastest exact peer: naive, 6 s
    table = bench_decode.table(rows)
    assert "| v | hfs | 3.00 | 2.00 | 1.50 | 100% |" in table
    assert "skipped: pip install torchcodec failed" in table
    assert bench_decode.goal(rows) == (False, ["naive_pyav", "decord"])  # 1.5x decord; torchcodec not measured


def test_goal_names_the_peers_it_was_measured_against():
    rows = [
        {"video": "v", "decoder": "hfs", "seconds": 2.0, "cpu_s": 2.0, "accuracy": 1.0},
        {"video": "v", "decoder": "torchcodec", "seconds": 3.0, "cpu_s": 3.0, "accuracy": 1.0},
    ]
    bench_decode.add_ratios(rows)
    assert bench_decode.goal(rows) == (True, ["torchcodec"])
    peers_only = rows[1:]  # `--decoders torchcodec`: no hfs row, so no verdict either way
    assert bench_decode.goal(peers_only) == (None, ["torchcodec"])
    failed = [{"video": "v", "decoder": "hfs", "error": "timed out after 900 s"}, *rows[1:]]
    bench_decode.add_ratios(failed)
    assert bench_decode.goal(failed) == (False, ["torchcodec"])


def test_run_measures_only_the_chosen_decoders_and_keeps_the_best(monkeypatch):
    """`--decoders hfs,torchcodec`: the others are neither installed nor run; best of the repeats counts."""
    calls = []
    times = iter([5.0, 4.0, 3.0, 6.0])  # hfs, torchcodec, hfs, torchcodec

    def fake_measure(decoder, video, timeout):
        calls.append(decoder)
        return {"seconds": next(times), "cpu_s": 1.0, "accuracy": 1.0}

    monkeypatch.setattr(bench_decode, "measure", fake_measure)
    monkeypatch.setattr(bench_decode, "ensure_installed", lambda d: calls.append(f"install {d}") or None)
    rows = bench_decode.run({"v": {"path": "v.mp4", "n_frames": 30}}, repeats=2, timeout=1, decoders=("hfs", "torchcodec"))
    assert calls == ["install hfs", "install torchcodec", "hfs", "torchcodec", "hfs", "torchcodec"]
    assert [(r["decoder"], r["seconds"]) for r in rows] == [("hfs", 3.0), ("torchcodec", 4.0)]


def test_paired_summary_leaves_out_the_warm_up_round():
    rounds = [
        {"round": 0, "ratio": 3.0, "accuracy_hfs": 1.0, "accuracy_peer": 1.0},  # warm-up: not counted
        {"round": 1, "ratio": 0.9, "accuracy_hfs": 1.0, "accuracy_peer": 1.0},
        {"round": 2, "ratio": 1.2, "accuracy_hfs": 1.0, "accuracy_peer": 1.0},
        {"round": 3, "ratio": 0.8, "accuracy_hfs": 1.0, "accuracy_peer": 1.0},
    ]
    summary = bench_decode.paired_summary({"rounds": rounds})
    assert summary == {"median_ratio": 0.9, "min_ratio": 0.8, "max_ratio": 1.2, "rounds_counted": 3, "exact": True, "met": True}
    rounds[2]["accuracy_hfs"] = 127 / 128  # one wrong frame fails the goal whatever the speed
    assert bench_decode.paired_summary({"rounds": rounds})["met"] is False


def test_pyav_ffmpeg_links_load_the_build_pyav_bundles(tmp_path):
    """torchcodec finds FFmpeg by plain soname (libavcodec.so.62); the links must lead to PyAV's own build."""
    import ctypes

    import av

    if not (Path(av.__file__).resolve().parent.parent / "av.libs").is_dir():
        pytest.skip("this PyAV uses a system FFmpeg")
    major, minor, micro = av.library_versions["libavcodec"]
    folder = bench_decode.pyav_ffmpeg_dir(tmp_path / "ffmpeg")
    libavcodec = ctypes.CDLL(str(folder / f"libavcodec.so.{major}"))
    assert libavcodec.avcodec_version() == (major << 16) | (minor << 8) | micro
    assert bench_decode.pyav_ffmpeg_dir(tmp_path / "ffmpeg") == folder  # rerunning replaces the links


def test_paired_worker_interleaves_hfs_and_torchcodec_exactly(clip):
    pytest.importorskip("torchcodec.decoders")
    path, n = clip
    result = bench_decode.paired_worker("torchcodec", path, n, rounds=1)
    assert [(r["round"], r["first"]) for r in result["rounds"]] == [(0, "hfs"), (1, "torchcodec")]
    for r in result["rounds"]:
        assert r["accuracy_hfs"] == r["accuracy_peer"] == 1.0
        assert r["hfs_s"] > 0 and r["peer_s"] > 0 and r["ratio"] == pytest.approx(r["hfs_s"] / r["peer_s"])
    assert bench_decode.paired_summary(result)["rounds_counted"] == 1
