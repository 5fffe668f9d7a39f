"""Stage 1 under faults and at scale: a video that hangs or crashes the decoder, missing
encoder weights, GPUs per worker, decode overlapping encode, and the end of a run that
reads no index row.

Faults come from the decode child's test-only hook (`HFS_TEST_DECODE_FAULT`): the child
segfaults, aborts or hangs on a video whose file name matches, as it would on a file
that breaks FFmpeg.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from hfs.cache import FeatureCache, read_index
from hfs.cache.format import INDEX_SCHEMA
from hfs.pipeline.decode import child as decode_child
from hfs.pipeline.demo.videos import write_index_video
from hfs.pipeline.extract import config as extract_config
from hfs.pipeline.extract import encoder as extract_encoder
from hfs.pipeline.extract import run as extract_run
from hfs.pipeline.extract import video as extract_video
from hfs.stages.cli import app

pytestmark = pytest.mark.xdist_group("clip")  # one test process imports open_clip (make test: --dist loadgroup)

FRAMES = 8
TINY = ["extract", "--preset", "tiny", "--frames", str(FRAMES), "--no-progress"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fault_videos")
    write_index_video(d / "ok1.mp4", 30, fps=10, size=(96, 72), gop=10)
    for name in ("ok2", "ok3", "crash", "aborts", "hangs"):
        shutil.copy(d / "ok1.mp4", d / f"{name}.mp4")
    write_index_video(d / "hd.mp4", 6, fps=6, size=(1280, 720), gop=3)
    return d


def _manifest(tmp_path: Path, clips: Path, names) -> Path:
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"video": str(clips / f"{n}.mp4")}) + "\n" for n in names))
    return m


def _run(args, expect=0):
    res = CliRunner().invoke(app, [*TINY, *args])
    assert res.exit_code == expect, res.output + repr(res.exception)
    return res.output


def _errors(cache: Path) -> dict[str, str]:
    return {Path(r["path"]).stem: r["error"] for r in read_index(cache).to_pylist()}


@pytest.fixture(autouse=True)
def _fresh_decoder():
    """Each test gets its own decode child (and leaves none behind)."""
    decode_child._set_decoder(None)
    yield
    decode_child._close_decoder()
    decode_child._set_decoder(None)


# -- items 6 and 7: a video that crashes or hangs the decoder costs its row only ----------------


def test_a_crashing_or_hanging_video_is_an_error_row_and_the_shard_goes_on(tmp_path, clips, monkeypatch):
    monkeypatch.setenv(decode_child.FAULT_ENV, "segv:crash,abort:aborts,hang:hangs")
    names = ["ok1", "crash", "ok2", "hangs", "aborts", "ok3"]
    t0 = time.monotonic()
    out = _run(["--manifest", str(_manifest(tmp_path, clips, names)), "--out", str(tmp_path / "c"), "--workers", "0",
                "--shard-size", "6", "--video-timeout", "3"])
    assert time.monotonic() - t0 < 120
    errors = _errors(tmp_path / "c")
    assert {n: e for n, e in errors.items() if e} == {
        "crash": "decoder crashed (killed by SIGSEGV) on this video; it was restarted",
        "aborts": "decoder crashed (killed by SIGABRT) on this video; it was restarted",
        "hangs": "decoding timed out after 3 s (--video-timeout); the decoder was stopped",
    }
    cache = FeatureCache(tmp_path / "c")
    assert len(cache) == 3  # the videos around the culprits are in the same, finished shard
    assert "decoder crashed" in out and "failed shards" not in out
    assert decode_child.get_decoder().starts == 4  # first child + one restart per culprit


def test_a_crash_on_a_dask_worker_keeps_the_worker_and_its_shard(tmp_path, clips, monkeypatch):
    import dask
    import distributed  # noqa: F401 - its config defaults first

    monkeypatch.setenv(decode_child.FAULT_ENV, "segv:crash")
    monkeypatch.setattr(extract_encoder, "_ENCODERS", {})
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
        _run(["--manifest", str(_manifest(tmp_path, clips, ["ok1", "crash", "ok2"])), "--out", str(tmp_path / "c"),
              "--workers", "1", "--threads", "1", "--shard-size", "3"])
    errors = _errors(tmp_path / "c")
    assert errors["crash"].startswith("decoder crashed (killed by SIGSEGV)") and not errors["ok1"] and not errors["ok2"]
    assert len(list((tmp_path / "c").glob("shard-*.parquet"))) == 1


def test_the_decode_child_dies_with_its_worker(tmp_path, clips):
    """A decoder hung on a file must not outlive the worker that started it."""
    import os
    import subprocess
    import sys

    code = ("import sys, time; from hfs.pipeline.decode.child import DecodeProcess; d = DecodeProcess(); "
            f"d.submit({{'video_id': 'h', 'path': {str(clips / 'hangs.mp4')!r}}}, "
            f"{{'frames': 4, 'backend': 'auto', 'clip_size': 224, 'teacher_size': None, 'timeout': None}}); "
            "print(d.proc.pid, flush=True); time.sleep(600)")
    env = {**os.environ, decode_child.FAULT_ENV: "hang:hangs"}
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    child = int(worker.stdout.readline())
    worker.kill()
    worker.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the decode child outlived its worker by 10 s")


def test_video_timeout_is_an_option_with_a_default():
    from hfs.stages.extract import build_config

    assert build_config(preset="tiny").video_timeout == extract_config.DEFAULT_VIDEO_TIMEOUT
    assert build_config(preset="tiny", video_timeout="none").video_timeout is None
    assert build_config(preset="tiny", video_timeout="2.5").video_timeout == 2.5


# -- item 2: missing weights stop the run once, before anything is written ----------------


def test_missing_clip_weights_are_one_message_and_exit_2_before_any_work(tmp_path, clips, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    m = _manifest(tmp_path, clips, ["ok1", "ok2", "ok3"])
    t0 = time.monotonic()
    res = CliRunner().invoke(app, ["extract", "--manifest", str(m), "--out", str(tmp_path / "c"), "--frames", "8",
                                   "--no-progress", "--workers", "2", "--shard-size", "1"])
    assert res.exit_code == 2, res.output
    assert time.monotonic() - t0 < 30  # no cluster was started
    text = " ".join(res.output.split())
    assert text.count("error:") == 1 and "Traceback" not in res.output
    assert "not in the local open_clip / Hugging Face cache" in text and "--pretrained none" in text
    assert not (tmp_path / "c" / "plan.json").exists()  # a rerun with --pretrained none starts clean


@pytest.mark.parametrize("workers", ["0", "2"])
def test_device_cuda_without_a_gpu_is_one_message(tmp_path, clips, monkeypatch, workers):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = CliRunner().invoke(app, [*TINY, "--manifest", str(_manifest(tmp_path, clips, ["ok1"])), "--out",
                                   str(tmp_path / "c"), "--device", "cuda", "--workers", workers])
    assert res.exit_code == 2 and "torch sees no CUDA device" in res.output and "Traceback" not in res.output


def test_a_finished_cache_needs_no_weights(tmp_path, clips, monkeypatch):
    """`hfs evaluate` calls extract() for videos the cache may hold already: no encoder, no error."""
    from hfs.manifests import read_manifest
    from hfs.pipeline.extract.encoder import EncoderError

    cfg = extract_config.ExtractConfig(frames=FRAMES, preset="tiny", pretrained="none")
    videos = read_manifest(_manifest(tmp_path, clips, ["ok1"])).videos
    assert extract_run.extract(videos, tmp_path / "c", cfg, workers=0, progress=False).ok == 1

    def missing(*args, **kwargs):
        raise EncoderError("no weights here")

    monkeypatch.setattr(extract_run, "check_encoder", missing)
    monkeypatch.setattr(extract_run, "check_encoder_here", missing)
    again = extract_run.extract(videos, tmp_path / "c", cfg, workers=0, progress=False)
    assert (again.skipped_done, again.ok) == (1, 0)
    more = read_manifest(_manifest(tmp_path, clips, ["ok1", "ok2"])).videos
    with pytest.raises(EncoderError):  # new work: the check stops it before anything is submitted
        extract_run.extract(more, tmp_path / "c", cfg, workers=0, progress=False)


# -- item 1: --size reaches the encoder and its preprocessing ------------------------------


def test_size_builds_the_encoder_for_it(tmp_path, clips):
    _run(["--manifest", str(_manifest(tmp_path, clips, ["ok1", "hd"])), "--out", str(tmp_path / "c"), "--workers", "0",
          "--size", "336"])
    cache = FeatureCache(tmp_path / "c")
    assert cache.config["size"] == 336
    rows = {Path(r["path"]).stem: r for r in cache.index.to_pylist()}
    assert all(r["status"] == "ok" for r in rows.values()), {n: r["error"] for n, r in rows.items()}
    assert cache.features(rows["hd"]["video_id"]).shape == (FRAMES, 512)


def test_size_defaults_to_the_encoders_own(tmp_path, clips):
    assert extract_config.ExtractConfig(preset="tiny").clip_size() == 224
    assert extract_config.ExtractConfig(model="ViT-L-14-336", pretrained="none").clip_size() == 336  # its config only
    _run(["--manifest", str(_manifest(tmp_path, clips, ["ok1"])), "--out", str(tmp_path / "c"), "--workers", "0"])
    assert FeatureCache(tmp_path / "c").config["size"] == 224  # the same config as caches made with --size 224


# -- item 12: frames are scaled in the decoder, and each use resizes once -------------------


def test_frames_arrive_at_the_size_their_uses_need(tmp_path, clips, monkeypatch):
    from PIL import Image

    resized = []
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, *a, **k: (resized.append((self.size, tuple(size))), resize(self, size, *a, **k))[1])
    cfg = extract_config.ExtractConfig(frames=FRAMES, preset="tiny", pretrained="none", size=224, torch_threads=1)
    encoder = extract_encoder.get_encoder(cfg)
    video = {"video_id": "hd", "path": str(clips / "hd.mp4")}
    r = extract_video.extract_video(video, encoder, cfg)
    assert r.status == "ok", r.error
    # 1280x720: the decoder converts to 448x252 (the teacher's size; CLIP needs 398x224), the
    # teacher JPEG takes it as it is, CLIP's own transform resizes it once to 398x224
    assert set(resized) == {((448, 252), (398, 224))}
    assert len(resized) == r.distinct_frames
    assert decode_child.decode_max_side(1280, 720, 224, 448) == 448 and decode_child.decode_max_side(400, 100, 224, 448) == 896
    assert decode_child.decode_max_side(1280, 720, 336, None) == 598


def test_decode_threads_follow_cores_over_workers(tmp_path, clips, monkeypatch):
    from hfs.manifests import read_manifest

    seen = []
    submit = decode_child.DecodeProcess.submit
    monkeypatch.setattr(decode_child.DecodeProcess, "submit", lambda self, video, opts: (seen.append(opts["threads"]), submit(self, video, opts))[1])
    monkeypatch.setattr(extract_run.os, "cpu_count", lambda: 6)
    cfg = extract_config.ExtractConfig(frames=FRAMES, preset="tiny", pretrained="none")
    videos = read_manifest(_manifest(tmp_path, clips, ["ok1"])).videos
    assert extract_run.extract(videos, tmp_path / "c", cfg, workers=0, progress=False).ok == 1
    assert seen == [6]  # one process: every core, for torch and for FFmpeg alike


# -- item 9: GPUs round-robin per host, decode overlapping encode ------------------------


def test_gpus_are_assigned_round_robin_per_host():
    workers = {"tcp://a:1": "a", "tcp://a:2": "a", "tcp://a:3": "a", "tcp://b:1": "b", "tcp://b:2": "b", "tcp://c:1": "c"}
    gpus = {"tcp://a:1": 2, "tcp://a:2": 2, "tcp://a:3": 2, "tcp://b:1": 4, "tcp://b:2": 4, "tcp://c:1": 0}
    assert extract_run.assign_gpus(workers, gpus) == {"tcp://a:1": 0, "tcp://a:2": 1, "tcp://a:3": 0, "tcp://b:1": 0, "tcp://b:2": 1}
    # dask-cuda style: each worker already sees only its own GPU
    assert extract_run.assign_gpus({"tcp://a:1": "a", "tcp://a:2": "a"}, {"tcp://a:1": 1, "tcp://a:2": 1}) == {"tcp://a:1": 0, "tcp://a:2": 0}


def test_each_worker_loads_clip_on_its_own_gpu(monkeypatch):
    import distributed

    class FakeClient:
        def scheduler_info(self):
            return {"workers": {"tcp://10.0.0.1:4001": {"host": "10.0.0.1"}, "tcp://10.0.0.1:4002": {"host": "10.0.0.1"}}}

        def run(self, fn, *args):
            return {"tcp://10.0.0.1:4001": 2, "tcp://10.0.0.1:4002": 2} if not args else fn(*args)

    assert extract_run._assign_workers_to_gpus(FakeClient()) == {"tcp://10.0.0.1:4001": 0, "tcp://10.0.0.1:4002": 1}
    monkeypatch.setattr(distributed, "get_worker", lambda: type("W", (), {"address": "tcp://10.0.0.1:4002"})())
    try:
        assert extract_encoder.worker_device("cuda") == "cuda:1" and extract_encoder.worker_device("cpu") == "cpu"
    finally:
        extract_run._set_assigned_gpus({})
    assert extract_encoder.worker_device("cuda") == "cuda"  # in-process runs: torch's current GPU


def test_the_next_video_decodes_while_this_one_is_encoded(clips):
    class SlowEncoder:
        """Stands in for CLIP on a GPU: encoding takes a while and leaves the CPU free."""

        image_size = 224
        embed_dim = 512

        def __init__(self):
            self.real = extract_encoder.get_encoder(cfg)

        def preprocess_frame(self, img):
            return self.real.preprocess_frame(img)

        def encode(self, pixels):
            time.sleep(0.5)
            return np.zeros((len(pixels), 512), np.float16)

    cfg = extract_config.ExtractConfig(frames=FRAMES, preset="tiny", pretrained="none", size=224, torch_threads=1)
    videos = [{"video_id": n, "path": str(clips / f"{n}.mp4")} for n in ("ok1", "ok2", "ok3")]
    results = list(extract_video.extract_videos(videos, SlowEncoder(), cfg))
    assert [r.status for r in results] == ["ok"] * 3
    for this, following in zip(results, results[1:]):
        # the child had the next video before this one's (0.5 s) encoding ended
        assert following.meta["decode_started"] < this.meta["encode_ended"]
        assert this.meta["encode_started"] < this.meta["encode_ended"]


# -- item 10: the end of a run reads no index row --------------------------------------------


def _big_index_shard(cache: Path, rows: int) -> None:
    """A finished shard of `rows` ok rows (index only: what the end of a run would read)."""
    ids = [f"v{i:07d}" for i in range(rows)]
    table = pa.table({
        "video_id": ids, "path": [f"/d/{i}.mp4" for i in ids], "start": [None] * rows, "end": [None] * rows,
        "shard": ["shard-99999"] * rows, "row": np.arange(rows, dtype=np.int32), "status": ["ok"] * rows,
        "error": [""] * rows, "duration": np.full(rows, 30.0), "fps": np.full(rows, 25.0),
        "width": np.full(rows, 320, np.int32), "height": np.full(rows, 240, np.int32),
        "frames_decoded": np.full(rows, 128, np.int32), "distinct_frames": np.full(rows, 128, np.int32),
        "decoder": ["pyav"] * rows, "decode_s": np.full(rows, 1.0), "encode_s": np.full(rows, 0.5),
    }, schema=INDEX_SCHEMA)
    cache.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, cache / "shard-99999.parquet")


def test_the_end_of_a_run_reads_no_index_row(tmp_path, clips):
    from hfs.manifests import read_manifest
    from hfs.stages.extract import build_config

    cache = tmp_path / "c"
    _big_index_shard(cache, 200_000)
    cfg = build_config(frames=str(FRAMES), preset="tiny", threads=1)
    videos = read_manifest(_manifest(tmp_path, clips, ["ok1"])).videos
    extract_run.extract(videos, cache, cfg, workers=0, progress=False)  # warm: encoder, index.arrow, imports
    more = read_manifest(_manifest(tmp_path, clips, ["ok2"])).videos
    tracemalloc.start()
    try:
        summary = extract_run.extract(more, cache, cfg, workers=0, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (summary.ok, summary.error, summary.frames) == (1, 0, FRAMES)
    stats = json.loads((cache / "stats.json").read_text())
    assert (stats["videos"], stats["ok"], stats["frames"]) == (200_002, 200_002, 200_000 * 128 + 2 * FRAMES)
    assert stats["hours_of_video"] == pytest.approx((200_000 * 30 + 2 * 3.0) / 3600, abs=1e-3)
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MB: index rows were made Python objects"  # 9 MB; rows: 200 MB
