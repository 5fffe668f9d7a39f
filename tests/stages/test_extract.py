"""Stage 1 end to end: `hfs extract` on synthetic videos with the tiny CLIP.

Covers the CLI, every bad-video case, the cache contents (to the frame),
Dask with local worker processes and with an external scheduler on
loopback, config mismatch, and resume after SIGKILL.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hfs.cache import FeatureCache, read_index
from hfs.manifests import read_manifest
from hfs.pipeline.demo.videos import read_frame_index, write_index_video
from hfs.stages.cli import app

pytestmark = pytest.mark.xdist_group("clip")  # one test process imports open_clip (make test: --dist loadgroup)

FRAMES = 16  # small N keeps the tests fast; the layout is the same as with 128
TIMING = ("decode_s", "encode_s")


def _audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=8000)
        s.layout = "mono"
        for i in range(5):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            f.sample_rate, f.pts = 8000, i * 1024
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    v = {
        "cfr": d / "cfr.mp4", "gop": d / "long_gop.mp4", "few": d / "few.mp4", "one": d / "one.mp4",
        "odd": d / "odd.mp4", "vfr": d / "vfr.mkv",
    }
    write_index_video(v["cfr"], 60, fps=10, size=(96, 72), gop=10)
    write_index_video(v["gop"], 80, fps=10, size=(96, 72))
    write_index_video(v["few"], 5, fps=10, size=(96, 72))
    write_index_video(v["one"], 1, fps=10, size=(96, 72))
    write_index_video(v["odd"], 20, fps=10, size=(97, 61))
    rng = np.random.default_rng(0)
    write_index_video(v["vfr"], 40, fps=10, size=(96, 72), vfr_pts=np.cumsum(rng.uniform(0.03, 0.2, 40)) - 0.03)
    big = d / "big.mp4"  # teacher frames keep the aspect and shrink to 448 on the longest side
    write_index_video(big, 4, fps=4, size=(640, 360))
    v["big"] = big
    (d / "empty.mp4").write_bytes(b"")
    (d / "garbage.mp4").write_bytes(os.urandom(4096))
    # a cut Matroska file still decodes up to the cut; a cut MP4 (index at the end) does not
    write_index_video(d / "whole.mkv", 60, fps=10, size=(96, 72), gop=10)
    data = (d / "whole.mkv").read_bytes()
    (d / "truncated.mkv").write_bytes(data[: len(data) // 2])
    data = v["cfr"].read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    _audio_only(d / "audio.m4a")
    for name in ("empty", "garbage", "truncated", "cut", "audio"):
        v[name] = next(d.glob(f"{name}.*"))
    return v


def _manifest(tmp_path: Path, videos: dict[str, Path], names, extra_lines=()) -> Path:
    lines = [json.dumps({"video": str(videos[n]) if n in videos else n, "id": n}) for n in names]
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(list(lines) + list(extra_lines)) + "\n")
    return m


TINY_EXTRACT = ["extract", "--preset", "tiny", "--frames", str(FRAMES), "--no-progress"]
"""The start of every `hfs extract` command line in these tests."""


def _extract(args, expect=0):
    res = CliRunner().invoke(app, [*TINY_EXTRACT, *args])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res.output


def _rows(cache: Path) -> dict[str, dict]:
    """Index rows by video id, timings dropped and NaN made None (NaN != NaN would fail every comparison)."""

    def clean(v):
        return None if isinstance(v, float) and math.isnan(v) else v

    return {
        r["video_id"]: {k: clean(v) for k, v in r.items() if k not in TIMING}
        for r in read_index(cache).to_pylist()
    }


def test_extract_cli_good_and_bad_videos(tmp_path, videos):
    names = list(videos) + ["/nope/missing.mp4"]
    m = _manifest(tmp_path, videos, names, extra_lines=["{not json", json.dumps({"id": "no-video"})])
    out = _extract(["--manifest", str(m), "--out", str(tmp_path / "c"), "--workers", "0", "--shard-size", "4"])
    assert "bad manifest lines" in out and "errors" in out
    cache = FeatureCache(tmp_path / "c")
    by_path = {r["path"]: r for r in cache.index.to_pylist()}
    assert len(by_path) == len(names)  # every video exactly once, good or bad

    def row(name):
        return by_path[str(videos[name]) if name in videos else name]

    for name in ("cfr", "gop", "few", "one", "odd", "vfr", "big", "truncated"):
        assert row(name)["status"] == "ok", (name, row(name)["error"])
    assert row("empty")["error"] == "file is empty (0 bytes)"
    assert row("audio")["error"] == "no video stream"
    assert row("/nope/missing.mp4")["error"] == "file not found: /nope/missing.mp4"
    for name in ("garbage", "cut"):
        assert row(name)["status"] == "error" and row(name)["error"] and "\n" not in row(name)["error"]
    # the truncated file keeps the frames before the cut; later targets repeat the last good one
    t = row("truncated")
    assert 0 < t["frames_decoded"] < FRAMES and t["distinct_frames"] < FRAMES
    # to the frame: segment centres of a 6.0 s, 10 fps clip -> frame floor(t * 10)
    vid = row("cfr")["video_id"]
    ts = cache.timestamps(vid)
    np.testing.assert_allclose(ts, (np.arange(FRAMES) + 0.5) * 6.0 / FRAMES, rtol=1e-6)
    jpegs = cache.frames(vid, range(FRAMES))
    got = [read_frame_index(np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))) for b in jpegs]
    assert got == [int(np.floor(t * 10 + 1e-6)) for t in ts]
    feats = cache.features(vid)
    assert feats.shape == (FRAMES, 512) and feats.dtype == np.float16 and np.isfinite(feats).all()
    # fewer frames than targets: nearest frames repeat, distinct count recorded
    assert (row("few")["distinct_frames"], row("one")["distinct_frames"]) == (5, 1)
    f5 = cache.features(row("few")["video_id"])
    assert len({f.tobytes() for f in f5}) == 5
    # teacher frames: aspect kept, longest side 448, never upscaled
    big = Image.open(io.BytesIO(cache.frames(row("big")["video_id"], [0])[0]))
    small = Image.open(io.BytesIO(cache.frames(vid, [0])[0]))
    assert big.size == (448, 252) and small.size == (96, 72)
    assert row("odd")["width"] == 97 and row("odd")["height"] == 61
    stats = json.loads((tmp_path / "c" / "stats.json").read_text())
    assert stats["videos"] == len(names) and stats["bad_manifest_lines"] == 2


def test_rerun_redoes_nothing_and_extends(tmp_path, videos):
    cache = tmp_path / "c"
    m1 = _manifest(tmp_path, videos, ["cfr", "few"])
    _extract(["--manifest", str(m1), "--out", str(cache), "--workers", "0", "--shard-size", "1"])
    before = {p.name: p.stat().st_mtime_ns for p in cache.glob("shard-*")}
    out = _extract(["--manifest", str(m1), "--out", str(cache), "--workers", "0", "--shard-size", "1"])
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("shard-*")} == before
    assert "already done (skipped)" in out
    m2 = _manifest(tmp_path, videos, ["cfr", "few", "one"])
    _extract(["--manifest", str(m2), "--out", str(cache), "--workers", "0", "--shard-size", "1"])
    assert len(read_index(cache)) == 3 and len(list(cache.glob("shard-*.parquet"))) == 3


def test_config_mismatch_is_an_error(tmp_path, videos):
    m = _manifest(tmp_path, videos, ["one"])
    _extract(["--manifest", str(m), "--out", str(tmp_path / "c"), "--workers", "0"])
    out = _extract(["--manifest", str(m), "--out", str(tmp_path / "c"), "--workers", "0", "--size", "112"], expect=2)
    assert "size: cache has 224, this run asks for 112" in " ".join(out.split())


def test_nothing_extracted_and_strict_exit_non_zero(tmp_path, videos):
    m = _manifest(tmp_path, videos, ["empty", "garbage"])
    _extract(["--manifest", str(m), "--out", str(tmp_path / "c1"), "--workers", "0"], expect=1)
    m2 = _manifest(tmp_path, videos, ["one", "empty"])
    _extract(["--manifest", str(m2), "--out", str(tmp_path / "c2"), "--workers", "0"], expect=0)
    _extract(["--manifest", str(m2), "--out", str(tmp_path / "c3"), "--workers", "0", "--strict"], expect=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": str(videos["one"])}) + "\n{oops\n")
    out = _extract(["--manifest", str(bad), "--out", str(tmp_path / "c4"), "--strict"], expect=2)
    assert f"{bad}:2:" in out


@pytest.mark.slow
def test_dask_two_local_workers_match_inline(tmp_path, videos, monkeypatch):
    import dask
    import distributed  # noqa: F401 - load its config defaults first: leaving dask.config.set would drop them

    from hfs.pipeline.extract import encoder as extract_mod

    m = _manifest(tmp_path, videos, ["cfr", "few", "vfr"])
    _extract(["--manifest", str(m), "--out", str(tmp_path / "inline"), "--workers", "0", "--shard-size", "1"])
    # Workers are forked from this process (torch is already imported here: a spawned worker
    # would spend a minute importing it on this 2-core machine); each still builds its own
    # encoder. A freshly started worker process is covered by the external-scheduler test.
    monkeypatch.setattr(extract_mod, "_ENCODERS", {})
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
        _extract(["--manifest", str(m), "--out", str(tmp_path / "dask"), "--workers", "2", "--threads", "1",
                  "--shard-size", "1"])
    assert _rows(tmp_path / "inline") == _rows(tmp_path / "dask")
    a, b = FeatureCache(tmp_path / "inline"), FeatureCache(tmp_path / "dask")
    for v in a.video_ids():
        np.testing.assert_array_equal(a.features(v), b.features(v))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_external_dask_scheduler_on_loopback(tmp_path, videos, monkeypatch):
    """A scheduler and a worker started from other folders than the client's, which gives a
    relative --out: the worker must write where the client means, not under its own folder."""
    port = _free_port()
    bindir = Path(sys.executable).parent
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    sched = subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                             cwd=elsewhere)
    worker = subprocess.Popen([str(bindir / "dask"), "worker", addr, "--nworkers", "1", "--nthreads", "1",
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                              cwd=elsewhere)
    try:
        m = _manifest(tmp_path, videos, ["cfr", "few", "garbage"])
        (tmp_path / "client-cwd").mkdir()
        monkeypatch.chdir(tmp_path / "client-cwd")
        _extract(["--manifest", str(m), "--out", "c", "--scheduler", addr, "--shard-size", "2"])
        rows = read_index(tmp_path / "client-cwd" / "c").to_pylist()
        assert sorted(r["status"] for r in rows) == ["error", "ok", "ok"]
        assert not (elsewhere / "c").exists()
    finally:
        for p in (worker, sched):
            p.terminate()
        for p in (worker, sched):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def _run_cli_then_exit(args: list[str], stacks: str) -> None:
    """Child process body: run the CLI in this (forked) interpreter, never return into pytest.

    If it is still running after a minute, every thread's stack goes to `stacks`
    (a stuck child then explains itself in the test's failure message).
    """
    import faulthandler

    code = 1
    dump = open(stacks, "w")  # noqa: SIM115 - lives until os._exit
    faulthandler.dump_traceback_later(60, file=dump)
    try:
        app(args, standalone_mode=False)
        code = 0
    except BaseException:  # noqa: BLE001 - the exit code is all the parent looks at
        pass
    finally:
        os._exit(code)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_uninterrupted_index(tmp_path, videos):
    import multiprocessing

    names = ["cfr", "few", "one", "odd", "vfr", "garbage"]
    m = _manifest(tmp_path, videos, names)
    args = ["--manifest", str(m), "--workers", "0", "--threads", "1", "--shard-size", "1"]
    _extract(args + ["--out", str(tmp_path / "ref")])
    killed = tmp_path / "killed"
    # The run to kill is a forked child running the same CLI (a fresh interpreter would spend
    # a minute importing torch here); SIGKILL gives it no chance to clean up.
    proc = multiprocessing.get_context("fork").Process(
        target=_run_cli_then_exit,
        args=([*TINY_EXTRACT, *args, "--out", str(killed)],
              str(tmp_path / "child-stacks.txt")),
    )
    proc.start()
    deadline = time.time() + 180
    while len(list(killed.glob("shard-*.parquet"))) < 2 and time.time() < deadline and proc.is_alive():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL, "the run finished before it could be killed"
    done_before = len(list(killed.glob("shard-*.parquet")))
    assert 2 <= done_before < len(names), "kill the run mid-way; child stacks:\n" + (tmp_path / "child-stacks.txt").read_text()
    # whatever the kill left, a reader sees only finished shards
    assert len(FeatureCache(killed).index) == done_before
    _extract(args + ["--out", str(killed)])
    assert _rows(killed) == _rows(tmp_path / "ref")
    ids = [r["video_id"] for r in read_index(killed).to_pylist()]
    assert len(ids) == len(set(ids)) == len(names)
    assert not list(killed.glob(".*.tmp-*"))
    assert sorted(p.stem for p in killed.glob("shard-*.h5")) == sorted(p.stem for p in killed.glob("shard-*.parquet"))


def test_the_summary_groups_error_reasons_and_lists_the_top_ten(monkeypatch, capsys):
    from collections import Counter

    from rich.console import Console

    import hfs.stages.extract as stage
    from hfs.cache.stats import error_kind
    from hfs.pipeline.extract.run import ExtractSummary

    monkeypatch.setattr(stage, "console", Console(width=200))
    messages = [f"window start {i}.00s is not before the end of the video ({i / 2:.2f}s)" for i in range(40)]
    messages += [f"cannot open: /data/{i}.mp4: Invalid data" for i in range(30)]
    messages += [f"reason{chr(97 + k)} number {k}" for k in range(14) for _ in range(k + 1)]
    summary = ExtractSummary(planned=len(messages), error=len(messages),
                             errors_by_reason=dict(Counter(map(error_kind, messages)).most_common()))
    stage.print_summary(summary, Path("c"))
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if " × " in line]
    assert len(rows) == 11, out  # the 10 most common kinds, then one line for the rest
    assert "40 × window start #s is not before the end of the video (#s)" in out
    assert "30 × cannot open" in out and "/data/" not in out
    assert "6 more kind(s) of error" in out and f"{1 + 2 + 3 + 4 + 5 + 6} × 6 more" in out


def test_manifest_dedupes_the_same_video(tmp_path, videos):
    m = tmp_path / "dup.jsonl"
    m.write_text("\n".join(json.dumps({"video": str(videos["one"]), "question": q}) for q in ("a?", "b?")) + "\n")
    assert len(read_manifest(m).videos) == 1
    _extract(["--manifest", str(m), "--out", str(tmp_path / "c"), "--workers", "0"])
    assert len(read_index(tmp_path / "c")) == 1


@pytest.mark.parametrize("threads, expected", [(None, os.cpu_count() or 1), (1, 1)])
def test_torch_threads_default_to_the_cores_and_leave_the_config_alone(tmp_path, videos, monkeypatch, threads, expected):
    from hfs.pipeline.extract import run as extract_run
    from hfs.stages.extract import build_config

    seen, run_shard = [], extract_run.run_shard
    monkeypatch.setattr(extract_run, "run_shard", lambda shard, out, cfg, *a: (seen.append(cfg["torch_threads"]), run_shard(shard, out, cfg, *a))[1])
    cfg = build_config(frames=str(FRAMES), preset="tiny", threads=threads)
    videos_ = read_manifest(_manifest(tmp_path, videos, ["cfr"])).videos
    summary = extract_run.extract(videos_, tmp_path / "cache", cfg, workers=0, progress=False)
    assert summary.ok == 1
    assert seen == [expected]  # workers=0: one process gets every core unless --threads says otherwise
    assert cfg.torch_threads == threads  # resolved in a copy
