"""FeatureCache at scale: compact index, consolidated index.arrow, read-only caches,
bounded HDF5 handles, fork and pickle (no torch)."""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import hfs.cache.index as index_mod
from hfs.cache import (
    CacheError,
    FeatureCache,
    VideoResult,
    consolidate_index,
    plan_extraction,
    read_config,
    read_index,
    write_shard,
)
from hfs.cache.format import CONFIG_FILE, INDEX_FILE, INDEX_SCHEMA, index_path
from hfs.cache.index import hash_ids, id_hash, load_index
from hfs.manifests.records import VideoItem, make_video_id

F, D = 8, 16
ATTRS = {"frames": F, "embed_dim": D, "size": 224, "model": "test", "pretrained": "none", "teacher_frames": True}
CONFIG = {"frames": F, "size": 224, "model": "test", "pretrained": "none"}
SHARD_SIZE = 4


def _video(i: int) -> VideoItem:
    name = f"clip_{i:03d}.mp4"
    return VideoItem(make_video_id(name), f"/data/{name}", name)


def _result(v: dict, seed: int, fail: bool = False) -> VideoResult:
    if fail:
        return VideoResult.failed(v, f"cannot open: bad file {seed}")
    rng = np.random.default_rng(seed)
    return VideoResult(
        v["video_id"], v["path"], features=rng.standard_normal((F, D)).astype(np.float16),
        timestamps=np.arange(F, dtype=np.float32) * 0.5 + seed,
        frames=[bytes([seed % 256, j]) * (j + 1) for j in range(F)],
        duration=4.0 + seed, fps=25.0, width=64, height=48, frames_decoded=F, distinct_frames=F, decoder="pyav",
    )


def _make_cache(root: Path, n_videos: int = 22, write: int | None = None):
    """A cache of ceil(n/4) planned shards, the first `write` (default all) written.

    Every `fail_every`-th video is an error row. Returns (plan, expected) where
    expected maps each written video id to its VideoResult.
    """
    plan, _ = plan_extraction(root, [_video(i) for i in range(n_videos)], CONFIG, shard_size=SHARD_SIZE)
    expected = {}
    for s in plan.shards[: len(plan.shards) if write is None else write]:
        expected.update(_write(root, s))
    return plan, expected


def _write(root: Path, shard, seed_offset: int = 0, fail_every: int = 5) -> dict:
    results = []
    for v in shard.videos:
        k = int(v["key"][5:8])
        results.append(_result(v, k + seed_offset, fail=k % fail_every == 0))
    write_shard(root, shard.name, results, ATTRS)
    return {r.video_id: r for r in results}


def _old_table(root: Path) -> pa.Table:
    """What read_index returned before index.arrow: every Parquet index read and concatenated."""
    files = sorted(root.glob("shard-*.parquet"))
    if not files:
        return INDEX_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=INDEX_SCHEMA) for f in files])


def _old_rows(root: Path) -> dict[str, dict]:
    """What FeatureCache held before: the index rows as dicts by video id."""
    return {r["video_id"]: r for r in _old_table(root).to_pylist()}


def _no_nan(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def _assert_reads(cache: FeatureCache, expected: dict) -> None:
    for vid, r in expected.items():
        if r.status == "ok":
            np.testing.assert_array_equal(cache.features(vid), r.features)
            np.testing.assert_array_equal(cache.timestamps(vid), r.timestamps)
            assert cache.frames(vid, [F - 1, 0]) == [r.frames[F - 1], r.frames[0]]


def _open_h5_fds(root: Path) -> int:
    """HDF5 files of `root` this process holds open (from the kernel's fd table, not our bookkeeping)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        n += target.startswith(str(root)) and target.endswith(".h5")
    return n


# -- lookups -------------------------------------------------------------------------


def test_lookups_of_ok_error_and_missing_ids_across_shards(tmp_path):
    plan, expected = _make_cache(tmp_path)
    assert len(plan.shards) == 6
    cache = FeatureCache(tmp_path)
    ok = [v for v, r in expected.items() if r.status == "ok"]
    bad = [v for v, r in expected.items() if r.status != "ok"]
    assert len(ok) == 17 and len(bad) == 5
    _assert_reads(cache, expected)
    assert len(cache) == len(ok) and all(v in cache for v in ok)
    assert not any(v in cache for v in bad) and "nope" not in cache and None not in cache
    for v in bad:
        row = cache.row(v)
        assert (row["status"], row["row"], row["video_id"]) == ("error", -1, v)
        with pytest.raises(KeyError, match=f"{v}.*failed extraction: cannot open: bad file"):
            cache.features(v)
    with pytest.raises(KeyError, match="'nope' is not in the cache .*not extracted yet"):
        cache.row("nope")
    with pytest.raises(KeyError, match="not in the cache"):
        cache.frames(ok[0][:-1], [0])  # a prefix of a real id is not that id
    in_order = [v["video_id"] for s in plan.shards for v in s.videos]  # shard order, as before
    assert cache.video_ids() == [v for v in in_order if v in set(ok)]
    assert cache.video_ids("error") == [v for v in in_order if v in set(bad)]
    assert cache.video_ids(None) == in_order
    assert cache.status_counts() == {"ok": 17, "error": 5}
    np.testing.assert_array_equal(cache.batch_features(ok[:3]), np.stack([expected[v].features for v in ok[:3]]))


def test_row_and_index_are_what_the_old_reader_gave(tmp_path):
    _make_cache(tmp_path)
    old = _old_rows(tmp_path)
    cache = FeatureCache(tmp_path)
    for vid, row in old.items():
        got = cache.row(vid)
        assert list(got) == INDEX_SCHEMA.names
        assert _no_nan(got) == _no_nan(row)
    assert cache.index.schema == INDEX_SCHEMA and cache.index.schema.metadata is None
    rows = [_no_nan(r) for r in _old_table(tmp_path).to_pylist()]  # NaN != NaN: compare without them
    assert [_no_nan(r) for r in cache.index.to_pylist()] == rows
    assert [_no_nan(r) for r in read_index(tmp_path).to_pylist()] == rows


def test_scalar_and_vectorised_id_hashes_agree():
    ids = ["", "a", "clip_001-0123456789ab", "é-ünïcode-视频", "x" * 300, "v", "ab", "ba"]
    got = hash_ids(pa.array(ids).slice(0))
    assert [int(h) for h in got] == [id_hash(v) for v in ids]
    assert id_hash("") == 0xCBF29CE484222325 and id_hash("a") == 0xAF63DC4C8601EC8C  # FNV-1a test vectors
    sliced = pa.array(ids).slice(2, 3)  # an array with an offset into shared buffers
    assert [int(h) for h in hash_ids(sliced)] == [id_hash(v) for v in ids[2:5]]


def test_hash_collisions_never_give_a_wrong_row(tmp_path, monkeypatch):
    _, expected = _make_cache(tmp_path)
    # every id in a handful of buckets: lookups must compare the ids themselves
    monkeypatch.setattr(index_mod, "id_hash", lambda v: len(v.encode()) % 3)
    monkeypatch.setattr(index_mod, "hash_ids", lambda arr: np.array([len(v.encode()) % 3 for v in arr.to_pylist()],
                                                                    dtype=np.uint64))
    cache = FeatureCache.__new__(FeatureCache)
    cache.__setstate__({"path": str(tmp_path), "max_open_shards": 4, "config": CONFIG})
    cache._index = load_index(tmp_path, update=False, rebuild=True)
    _assert_reads(cache, expected)
    assert all((v in cache) == (r.status == "ok") for v, r in expected.items())
    assert "clip_999-0123456789ab" not in cache


def test_an_id_listed_twice_resolves_to_its_last_row(tmp_path):
    plan, _ = _make_cache(tmp_path, n_videos=8)
    v = plan.shards[0].videos[1]  # listed again in the second shard's index (a plan never does this)
    table = pq.read_table(index_path(tmp_path, plan.shards[1].name))
    row = {**FeatureCache(tmp_path).row(v["video_id"]), "shard": plan.shards[1].name, "row": 0, "duration": 103.0}
    pq.write_table(pa.concat_tables([table, pa.Table.from_pylist([row], schema=INDEX_SCHEMA)]),
                   index_path(tmp_path, plan.shards[1].name))
    cache = FeatureCache(tmp_path)
    assert cache.row(v["video_id"])["duration"] == 103.0 and cache.row(v["video_id"])["shard"] == plan.shards[1].name
    assert cache.video_ids(None).count(v["video_id"]) == 2  # the index keeps both rows, as read_index did


# -- the consolidated index ------------------------------------------------------------


def test_consolidated_index_follows_the_shard_indexes(tmp_path):
    plan, expected = _make_cache(tmp_path, write=4)
    first = FeatureCache(tmp_path)
    assert (tmp_path / INDEX_FILE).exists() and first._idx.source == tmp_path / INDEX_FILE
    assert len(first) == sum(r.status == "ok" for r in expected.values())
    # a shard finished after index.arrow was written is seen, by every reader
    expected.update(_write(tmp_path, plan.shards[4]))
    late = [v["video_id"] for v in plan.shards[4].videos]
    cache = FeatureCache(tmp_path)
    assert all(cache.row(v)["shard"] == plan.shards[4].name for v in late)
    _assert_reads(cache, expected)
    assert set(read_index(tmp_path).column("video_id").to_pylist()) == set(expected)
    # ... and now recorded in index.arrow, so the next open reads no Parquet at all
    assert set(load_index(tmp_path).shards) == {s.name for s in plan.shards[:5]}
    # a shard whose .parquet is gone (as after clean_stale_files, or deleted to redo it) is never seen
    gone = plan.shards[1]
    index_path(tmp_path, gone.name).unlink()
    cache = FeatureCache(tmp_path)
    for v in gone.videos:
        assert v["video_id"] not in cache
        with pytest.raises(KeyError, match="not in the cache"):
            cache.row(v["video_id"])
    assert gone.name not in set(read_index(tmp_path).column("shard").to_pylist())
    assert len(cache) == sum(r.status == "ok" and r.video_id not in {v["video_id"] for v in gone.videos}
                             for r in expected.values())
    assert gone.name not in load_index(tmp_path).shards
    # the same shard written again with other contents: the new rows, not the recorded ones
    redone = _write(tmp_path, gone, seed_offset=50, fail_every=1000)
    cache = FeatureCache(tmp_path)
    _assert_reads(cache, redone)
    assert all(v in cache for v in redone)
    assert {k: _no_nan(v) for k, v in _old_rows(tmp_path).items()} == {
        r["video_id"]: _no_nan(r) for r in cache.index.to_pylist()}
    # a recorded shard replaced in one go (no open in between): its stat differs, its rows are re-read
    assert gone.name in load_index(tmp_path).shards
    again = _write(tmp_path, gone, seed_offset=70, fail_every=2)
    cache = FeatureCache(tmp_path)
    _assert_reads(cache, again)
    assert [cache.row(v)["status"] for v in again] == [r.status for r in again.values()]
    assert any(r.status == "error" for r in again.values())


def test_an_up_to_date_index_reads_no_parquet_and_is_not_rewritten(tmp_path, monkeypatch):
    _make_cache(tmp_path)
    assert consolidate_index(tmp_path) == tmp_path / INDEX_FILE
    before = (tmp_path / INDEX_FILE).stat().st_mtime_ns

    def no_parquet(path):
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(index_mod, "_read_shard", no_parquet)
    cache = FeatureCache(tmp_path)
    assert len(cache) == 17 and len(cache.index) == 22
    assert consolidate_index(tmp_path) == tmp_path / INDEX_FILE
    assert (tmp_path / INDEX_FILE).stat().st_mtime_ns == before


def test_a_damaged_index_file_is_rebuilt(tmp_path, caplog):
    _, expected = _make_cache(tmp_path)
    (tmp_path / INDEX_FILE).write_bytes(b"ARROW1 but not really")
    with caplog.at_level(logging.WARNING, logger="hfs.cache.index"):
        cache = FeatureCache(tmp_path)
    assert "unusable" in caplog.text
    _assert_reads(cache, expected)
    assert index_mod._open_file(tmp_path / INDEX_FILE) is not None  # rewritten whole
    assert consolidate_index(tmp_path, rebuild=True) == tmp_path / INDEX_FILE
    assert len(FeatureCache(tmp_path).index) == 22


def test_empty_and_unfinished_caches(tmp_path):
    plan_extraction(tmp_path, [_video(i) for i in range(3)], CONFIG, shard_size=SHARD_SIZE)
    cache = FeatureCache(tmp_path)
    assert len(cache) == 0 and cache.video_ids() == [] and len(cache.index) == 0 and "x" not in cache
    assert cache.index.schema == INDEX_SCHEMA and not (tmp_path / INDEX_FILE).exists()
    assert len(read_index(tmp_path / "nowhere")) == 0


# -- read-only caches ---------------------------------------------------------------------


def _stale_cache(root: Path) -> tuple[dict, float]:
    """A cache whose index.arrow misses its last shard; returns (expected, index.arrow mtime)."""
    plan, expected = _make_cache(root, write=5)
    consolidate_index(root)
    expected.update(_write(root, plan.shards[5]))
    (root / CONFIG_FILE).unlink()  # as a cache made before config.json existed
    return expected, (root / INDEX_FILE).stat().st_mtime_ns


def test_a_read_only_cache_folder_opens(tmp_path):
    root = tmp_path / "c"
    expected, mtime = _stale_cache(root)
    root.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("chmod does not stop this user (root) from writing")
        cache = FeatureCache(root)
        _assert_reads(cache, expected)
        assert cache.config == CONFIG and len(cache.index) == 22
        assert len(read_index(root)) == 22 and consolidate_index(root) == root / INDEX_FILE
        assert (root / INDEX_FILE).stat().st_mtime_ns == mtime and not (root / CONFIG_FILE).exists()
    finally:
        root.chmod(0o755)


def test_a_cache_that_cannot_be_written_is_indexed_in_memory(tmp_path, monkeypatch, caplog):
    """The same as the chmod test for users chmod does not stop: the folder reports itself read-only
    (os.access), or writing fails anyway (a read-only mount os.access does not see)."""
    expected, mtime = _stale_cache(tmp_path)
    monkeypatch.setattr(index_mod, "_writable", lambda d: False)
    with caplog.at_level(logging.WARNING, logger="hfs.cache.index"):
        cache = FeatureCache(tmp_path)
    assert "read-only" in caplog.text and cache._idx.source is None
    _assert_reads(cache, expected)
    assert (tmp_path / INDEX_FILE).stat().st_mtime_ns == mtime
    monkeypatch.undo()

    def refuse(path, index):
        raise PermissionError(30, "Read-only file system", str(path))

    monkeypatch.setattr(index_mod, "_write_file", refuse)
    cache = FeatureCache(tmp_path)
    _assert_reads(cache, expected)
    assert (tmp_path / INDEX_FILE).stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob(".*.tmp-*"))


# -- config.json ----------------------------------------------------------------------------


def test_config_comes_from_config_json_with_plan_json_as_fallback(tmp_path):
    _make_cache(tmp_path, n_videos=3)
    assert (tmp_path / CONFIG_FILE).exists()
    assert FeatureCache(tmp_path).config == CONFIG
    # config.json is what is read: plan.json is not parsed at all
    plan_text = (tmp_path / "plan.json").read_text()
    (tmp_path / "plan.json").write_text("{ not json, and 200 MB at 1M videos")
    assert FeatureCache(tmp_path).config == CONFIG
    # a cache from before config.json: the config comes from plan.json, and config.json is written
    (tmp_path / "plan.json").write_text(plan_text)
    (tmp_path / CONFIG_FILE).unlink()
    assert FeatureCache(tmp_path).config == CONFIG
    assert (tmp_path / CONFIG_FILE).exists() and read_config(tmp_path) == CONFIG
    # the next plan_extraction of an old cache writes it too
    (tmp_path / CONFIG_FILE).unlink()
    plan_extraction(tmp_path, [_video(i) for i in range(3)], CONFIG, shard_size=SHARD_SIZE)
    assert (tmp_path / CONFIG_FILE).exists()
    (tmp_path / "plan.json").unlink()
    with pytest.raises(CacheError, match="no plan.json"):
        FeatureCache(tmp_path)


# -- HDF5 handles ------------------------------------------------------------------------------


def test_at_most_max_open_shards_files_are_open(tmp_path):
    plan, expected = _make_cache(tmp_path)
    ok = [v for v, r in expected.items() if r.status == "ok"]
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="max_open_shards"):
        FeatureCache(tmp_path, max_open_shards=0)
    for limit in (1, 2, 4):
        with FeatureCache(tmp_path, max_open_shards=limit) as cache:
            assert _open_h5_fds(tmp_path) == 0
            seen = 0
            for v in [*ok, *rng.permutation(ok), *ok[::-1]]:
                np.testing.assert_array_equal(cache.features(v), expected[v].features)
                assert cache.frames(v, [3]) == [expected[v].frames[3]]
                open_now = _open_h5_fds(tmp_path)
                assert open_now <= limit and len(cache._files) <= limit
                seen = max(seen, open_now)
            assert seen == limit  # the limit is used, then kept to
        assert _open_h5_fds(tmp_path) == 0  # the context manager closed them


def test_recently_used_shards_stay_open(tmp_path):
    plan, expected = _make_cache(tmp_path)
    by_shard = {}
    for v, r in expected.items():
        if r.status == "ok":
            by_shard.setdefault(FeatureCache(tmp_path).row(v)["shard"], v)
    a, b, c = list(by_shard.values())[:3]
    cache = FeatureCache(tmp_path, max_open_shards=2)
    cache.features(a)
    cache.features(b)
    handle_a = cache._files[cache.row(a)["shard"]]
    cache.features(a)  # a is now the most recent: opening c evicts b
    cache.features(c)
    assert list(cache._files) == [cache.row(a)["shard"], cache.row(c)["shard"]]
    assert cache._files[cache.row(a)["shard"]] is handle_a and handle_a.id.valid


def _child_reads(cache: FeatureCache, ids: list[str], inherited: list, q) -> None:
    got = {v: (cache.features(v).tobytes(), cache.timestamps(v).tobytes(), cache.frames(v, [1])) for v in ids}
    mine = [id(f) for f in cache._files.values()]
    cache.close()
    q.put({"got": got, "used_inherited": any(i in mine for i in inherited),
           "inherited_still_open": all(f.id.valid for f in cache._inherited), "n_inherited": len(cache._inherited)})


def test_fork_reads_the_parents_arrays_and_leaves_its_handles_alone(tmp_path):
    _, expected = _make_cache(tmp_path)
    ok = [v for v, r in expected.items() if r.status == "ok"]
    cache = FeatureCache(tmp_path, max_open_shards=2)
    parent = {v: (cache.features(v).tobytes(), cache.timestamps(v).tobytes(), cache.frames(v, [1])) for v in ok}
    held = dict(cache._files)
    assert len(held) == 2
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_reads, args=(cache, ok, [id(f) for f in held.values()], q))
    p.start()
    out = q.get(timeout=60)
    p.join(30)
    assert p.exitcode == 0
    assert out["got"] == parent
    assert not out["used_inherited"] and out["inherited_still_open"] and out["n_inherited"] == 2
    # the parent's handles are the ones it had, still open and usable
    assert dict(cache._files) == held and all(f.id.valid for f in held.values())
    _assert_reads(cache, expected)


def _spawned_reads(blob: bytes, ids: list[str], q) -> None:
    cache = pickle.loads(blob)
    q.put({v: cache.features(v).tobytes() for v in ids})


def test_pickle_round_trip_is_small_and_reads_the_same(tmp_path):
    _, expected = _make_cache(tmp_path)
    ok = [v for v, r in expected.items() if r.status == "ok"]
    cache = FeatureCache(tmp_path, max_open_shards=3)
    cache.features(ok[0])  # an open handle and a loaded index: neither travels
    blob = pickle.dumps(cache)
    assert len(blob) < 1000 and b"shard-" not in blob
    clone = pickle.loads(blob)
    assert clone._index is None and clone.max_open_shards == 3 and clone.config == cache.config
    _assert_reads(clone, expected)
    assert clone.row(ok[1]) == cache.row(ok[1]) and len(clone) == len(cache)
    # as a DataLoader with the spawn start method does: a fresh interpreter unpickles it
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_spawned_reads, args=(blob, ok, q))
    p.start()
    got = q.get(timeout=120)
    p.join(30)
    assert p.exitcode == 0 and got == {v: expected[v].features.tobytes() for v in ok}


def test_reads_stay_right_while_shards_are_added(tmp_path):
    """An open cache is a snapshot: a shard finished after it opened is seen by the next open."""
    plan, expected = _make_cache(tmp_path, write=3)
    cache = FeatureCache(tmp_path)
    new = _write(tmp_path, plan.shards[3])
    assert not any(v in cache for v in new)
    _assert_reads(cache, expected)
    assert all((v in FeatureCache(tmp_path)) == (r.status == "ok") for v, r in new.items())


def test_packed_frames_hold_every_frame_in_order(tmp_path):
    _, expected = _make_cache(tmp_path, n_videos=8)
    cache = FeatureCache(tmp_path)
    for vid, result in expected.items():
        if result.status != "ok":
            continue
        data, offsets = cache.packed_frames(vid)
        assert data.dtype == np.uint8 and offsets.tolist()[0] == 0 and len(offsets) == F + 1
        assert [data[offsets[j]:offsets[j + 1]].tobytes() for j in range(F)] == list(result.frames)
        assert [data[offsets[j]:offsets[j + 1]].tobytes() for j in (3, 0)] == cache.frames(vid, [3, 0])
