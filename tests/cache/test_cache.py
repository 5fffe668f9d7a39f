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
    load_plan,
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
    assert load_plan(tmp_path).shards[3].videos[0]["key"] == "v9.mp4"


def test_adding_videos_appends_and_rewrites_nothing_before(tmp_path):
    plan, _ = plan_extraction(tmp_path, [_video(f"v{i}.mp4") for i in range(5)], CONFIG, shard_size=2)
    shards_file = tmp_path / "plan-shards.jsonl"
    before, inode = shards_file.read_bytes(), shards_file.stat().st_ino
    plan2, new = plan_extraction(tmp_path, [_video(f"w{i}.mp4") for i in range(3)], CONFIG, shard_size=2)
    assert new == 3 and [len(s) for s in plan2.shards] == [2, 2, 1, 2, 1]
    after = shards_file.read_bytes()
    assert after.startswith(before) and len(after) > len(before) and shards_file.stat().st_ino == inode
    header = (tmp_path / "plan.json").read_text()
    assert len(header) < 1000 and "v0.mp4" not in header  # the config and a length, not the videos
    assert json.loads(header)["config"] == CONFIG
    assert [s.to_json() for s in load_plan(tmp_path).shards] == [s.to_json() for s in plan2.shards]


def test_a_killed_append_leaves_nothing_a_reader_or_the_next_append_sees(tmp_path):
    plan_extraction(tmp_path, [_video("a.mp4")], CONFIG, shard_size=2)
    committed = (tmp_path / "plan-shards.jsonl").read_bytes()
    with open(tmp_path / "plan-shards.jsonl", "ab") as f:  # appended, killed before plan.json said so
        f.write(b'{"name": "shard-00001", "video_id": ["half-writ')
    assert [s.name for s in load_plan(tmp_path).shards] == ["shard-00000"]
    plan, new = plan_extraction(tmp_path, [_video("b.mp4")], CONFIG, shard_size=2)
    assert new == 1 and [s.name for s in load_plan(tmp_path).shards] == ["shard-00000", "shard-00001"]
    data = (tmp_path / "plan-shards.jsonl").read_bytes()
    assert data.startswith(committed) and b"half-writ" not in data


def test_a_cache_planned_by_format_1_opens_and_extends(tmp_path):
    """plan.json of the first release: every shard inline (written here as that code did)."""
    vids = [_video(f"v{i}.mp4") for i in range(3)]
    shards = [{"name": f"shard-{i:05d}", "videos": [{"video_id": v.video_id, "path": v.path, "key": v.key,
                                                     "start": v.start, "end": v.end} for v in vids[2 * i : 2 * i + 2]]}
              for i in range(2)]
    (tmp_path / "plan.json").write_text(json.dumps({"format_version": 1, "config": CONFIG, "shards": shards}, indent=2))
    write_shard(tmp_path, "shard-00000", [_ok(vids[0], 1), _ok(vids[1], 2)], ATTRS)
    assert FeatureCache(tmp_path).config == CONFIG and vids[0].video_id in FeatureCache(tmp_path)
    text = (tmp_path / "plan.json").read_text()
    plan, new = plan_extraction(tmp_path, vids, CONFIG, shard_size=2)  # nothing new: nothing rewritten
    assert new == 0 and (tmp_path / "plan.json").read_text() == text
    assert [s.name for s in plan.pending(tmp_path)] == ["shard-00001"]
    plan, new = plan_extraction(tmp_path, vids + [_video("w.mp4")], CONFIG, shard_size=2)
    assert new == 1 and [s.to_json() for s in plan.shards[:2]] == shards
    reloaded = load_plan(tmp_path)
    assert [s.to_json() for s in reloaded.shards[:2]] == shards and reloaded.shards[2].videos[0]["key"] == "w.mp4"
    assert vids[0].video_id in FeatureCache(tmp_path)


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


def test_files_get_the_umask_mode_not_tempfile_s_0600(tmp_path):
    """Another account (a cluster's workers, a colleague's evaluation) reads what was written."""
    import os

    old = os.umask(0o027)
    try:
        vids = [_video("a.mp4"), _video("b.mp4")]
        plan, _ = plan_extraction(tmp_path, vids, CONFIG, shard_size=8)
        write_shard(tmp_path, plan.shards[0].name, [_ok(vids[0], 1), _ok(vids[1], 2)], ATTRS)
        FeatureCache(tmp_path)  # builds index.arrow
        write_stats(tmp_path)
    finally:
        os.umask(old)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    assert {"plan.json", "plan-shards.jsonl", "index.arrow", "stats.json"} <= modes.keys()
    assert any(n.endswith(".h5") for n in modes) and any(n.endswith(".parquet") for n in modes)
    assert set(modes.values()) == {"0o640"}, modes


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


def test_error_kinds_drop_the_file_specific_detail():
    from hfs.cache.stats import error_kind, top_reasons

    assert error_kind("file not found: /data/a.mp4") == "file not found"
    assert error_kind("cannot open: Invalid data found (ffmpeg: moov atom not found)") == "cannot open"
    assert error_kind("window start 3.00s is not before the end of the video (2.50s)") == \
        error_kind("window start 7.00s is not before the end of the video (1.00s)")
    assert error_kind("decoder returned no frame for 3 of 16 targets") == "decoder returned no frame for # of # targets"
    assert error_kind("unsupported codec h264 in 'x.mp4'") == "unsupported codec h264 in '…'"
    assert error_kind("") == "unknown error"
    shown, more_kinds, more_videos = top_reasons({f"k{i}": i for i in range(1, 14)}, limit=10)
    assert [k for k, _ in shown] == [f"k{i}" for i in range(13, 3, -1)] and (more_kinds, more_videos) == (3, 6)


def test_stats_of_a_large_cache_make_no_python_row(tmp_path):
    """stats.json sums columns of the memory-mapped index; only error messages become Python strings."""
    import tracemalloc

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hfs.cache.format import INDEX_SCHEMA
    from hfs.cache.stats import summarize

    rows = 100_000
    status = np.where(np.arange(rows) % 1000 == 0, "error", "ok")
    table = pa.table({
        "video_id": [f"v{i}" for i in range(rows)], "path": [f"/d/v{i}.mp4" for i in range(rows)],
        "start": pa.nulls(rows, pa.float64()), "end": pa.nulls(rows, pa.float64()), "shard": ["shard-00000"] * rows,
        "row": np.arange(rows, dtype=np.int32), "status": status,
        "error": np.where(status == "ok", "", "cannot open: bad"), "duration": np.where(status == "ok", 36.0, np.nan),
        "fps": np.full(rows, 25.0), "width": np.full(rows, 64, np.int32), "height": np.full(rows, 48, np.int32),
        "frames_decoded": np.where(status == "ok", 128, 0).astype(np.int32), "distinct_frames": np.full(rows, 128, np.int32),
        "decoder": ["pyav"] * rows, "decode_s": np.full(rows, 0.5), "encode_s": np.full(rows, 0.25),
    }, schema=INDEX_SCHEMA)
    pq.write_table(table, tmp_path / "shard-00000.parquet")
    summarize(tmp_path)  # builds index.arrow
    tracemalloc.start()
    try:
        stats = summarize(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (stats["videos"], stats["ok"], stats["error"], stats["shards_done"]) == (rows, rows - 100, 100, 1)
    assert stats["errors_by_reason"] == {"cannot open": 100}
    assert stats["frames"] == (rows - 100) * 128 and stats["hours_of_video"] == round((rows - 100) * 36 / 3600, 4)
    assert stats["decode_s"] == rows * 0.5 and stats["encode_s"] == rows * 0.25
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MB: index rows were made Python objects"
