"""The cache format: plan, atomic shard writer, reader, stats (no torch)."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

from hfs.cache import (
    CacheError,
    FeatureCache,
    VideoResult,
    clean_stale_files,
    plan_extraction,
    read_index,
    write_shard,
    write_stats,
)
from hfs.manifests.records import VideoItem, make_video_id

F, D = 8, 16
ATTRS = {"frames": F, "embed_dim": D, "size": 224, "model": "test", "pretrained": "none", "teacher_frames": True}
CONFIG = {"frames": F, "size": 224, "model": "test", "pretrained": "none"}


def _video(name: str, start=None, end=None) -> VideoItem:
    return VideoItem(make_video_id(name, start, end), f"/data/{name}", name, start, end)


def _ok(v: VideoItem, seed: int) -> VideoResult:
    rng = np.random.default_rng(seed)
    return VideoResult(
        v.video_id, v.path, features=rng.standard_normal((F, D)).astype(np.float16),
        timestamps=np.arange(F, dtype=np.float32) + seed, frames=[bytes([seed, i]) * (i + 1) for i in range(F)],
        duration=10.0, fps=25.0, width=64, height=48, frames_decoded=F, distinct_frames=F, decoder="pyav",
    )


def test_plan_is_deterministic_and_extends(tmp_path):
    vids = [_video(f"v{i}.mp4") for i in range(5)]
    plan, new = plan_extraction(tmp_path, list(reversed(vids)), CONFIG, shard_size=2)
    assert new == 5 and [len(s.videos) for s in plan.shards] == [2, 2, 1]
    ids = [v["video_id"] for s in plan.shards for v in s.videos]
    assert ids == sorted(v.video_id for v in vids)  # independent of manifest order
    # same videos again: nothing new; one more video: appended in a new shard, old shards unchanged
    plan2, new2 = plan_extraction(tmp_path, vids + [_video("v9.mp4")], CONFIG, shard_size=2)
    assert new2 == 1 and len(plan2.shards) == 4
    assert [s.to_json() for s in plan2.shards[:3]] == [s.to_json() for s in plan.shards]
    assert json.loads((tmp_path / "plan.json").read_text())["shards"][3]["videos"][0]["key"] == "v9.mp4"


def test_config_mismatch_names_the_difference(tmp_path):
    plan_extraction(tmp_path, [_video("a.mp4")], CONFIG, shard_size=2)
    with pytest.raises(CacheError) as e:
        plan_extraction(tmp_path, [_video("a.mp4")], {**CONFIG, "frames": 64, "pretrained": "openai"}, 2)
    msg = str(e.value)
    assert "frames: cache has 8, this run asks for 64" in msg
    assert "pretrained: cache has 'none', this run asks for 'openai'" in msg
    assert "size" not in msg  # only what differs


def test_write_read_round_trip(tmp_path):
    vids = [_video("a.mp4"), _video("b.mp4"), _video("a.mp4", 1.0, 3.0)]
    plan, _ = plan_extraction(tmp_path, vids, CONFIG, shard_size=8)
    results = [_ok(vids[0], 1), VideoResult.failed({"video_id": vids[1].video_id, "path": vids[1].path},
                                                   "cannot open:\n  Invalid data"), _ok(vids[2], 3)]
    write_shard(tmp_path, plan.shards[0].name, results, ATTRS)
    assert plan.pending(tmp_path) == []
    cache = FeatureCache(tmp_path)
    assert len(cache) == 2 and vids[1].video_id not in cache and vids[0].video_id in cache
    np.testing.assert_array_equal(cache.features(vids[2].video_id), results[2].features)
    assert cache.features(vids[0].video_id).dtype == np.float16
    np.testing.assert_array_equal(cache.timestamps(vids[0].video_id), np.arange(F, dtype=np.float32) + 1)
    assert cache.frames(vids[2].video_id, [0, 5]) == [bytes([3, 0]), bytes([3, 5]) * 6]
    row = cache.row(vids[1].video_id)
    assert row["status"] == "error" and row["row"] == -1 and row["error"] == "cannot open: Invalid data"
    with pytest.raises(KeyError, match="failed extraction: cannot open"):
        cache.features(vids[1].video_id)
    with pytest.raises(KeyError, match="not in the cache"):
        cache.features("nope")
    stats = write_stats(tmp_path)
    assert (stats["videos"], stats["ok"], stats["error"]) == (3, 2, 1)
    assert stats["errors_by_reason"] == {"cannot open": 1}


def test_reader_reopens_files_after_fork(tmp_path):
    v = _video("a.mp4")
    plan, _ = plan_extraction(tmp_path, [v], CONFIG, shard_size=8)
    write_shard(tmp_path, plan.shards[0].name, [_ok(v, 2)], ATTRS)
    cache = FeatureCache(tmp_path)
    expected = float(cache.features(v.video_id).astype(np.float64).sum())  # parent opened the file
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=lambda: q.put(float(cache.features(v.video_id).astype(np.float64).sum())))
    p.start()
    p.join(30)
    assert p.exitcode == 0 and q.get(timeout=5) == expected


def test_stale_files_are_removed_and_never_read(tmp_path):
    v = _video("a.mp4")
    plan, _ = plan_extraction(tmp_path, [v], CONFIG, shard_size=8)
    # what a kill can leave: a temp file, and an HDF5 whose index was never written
    (tmp_path / ".shard-00000.h5.tmp-abc").write_bytes(b"partial")
    (tmp_path / "shard-00000.h5").write_bytes(b"whole but unindexed")
    assert len(read_index(tmp_path)) == 0 and len(FeatureCache(tmp_path)) == 0
    removed = clean_stale_files(tmp_path)
    assert sorted(p.name for p in removed) == [".shard-00000.h5.tmp-abc", "shard-00000.h5"]
    assert plan.pending(tmp_path)[0].name == "shard-00000"


def test_teacherless_shard(tmp_path):
    v = _video("a.mp4")
    plan, _ = plan_extraction(tmp_path, [v], CONFIG, shard_size=8)
    r = _ok(v, 1)
    r.frames = None
    write_shard(tmp_path, plan.shards[0].name, [r], {**ATTRS, "teacher_frames": False})
    with pytest.raises(CacheError, match="--frames none"):
        FeatureCache(tmp_path).frames(v.video_id, [0])


def test_missing_plan_is_a_clear_error(tmp_path):
    with pytest.raises(CacheError, match="no plan.json"):
        FeatureCache(tmp_path)
