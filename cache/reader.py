"""Reading the feature cache: `FeatureCache(path)`.

Opening reads `config.json` and the consolidated index (cache/index.py:
memory-mapped, ~0.2 s and ~60 MB over the imports for 1M videos, pages
shared between processes by the page cache). HDF5 files are opened
lazily, at most `max_open_shards` per process (least recently used closed first), and a
process never uses or closes handles it inherited through fork, so a cache
object created before a DataLoader forks its workers is safe to use in
them. Pickling keeps only the path and settings (a spawned worker maps the
index again on first use). No torch here.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hfs.cache.format import PLAN_FILE, CacheError, h5_path
from hfs.cache.index import ShardIndex, consolidate_index, load_index, read_index
from hfs.cache.plan import read_config

__all__ = ["FeatureCache", "consolidate_index", "read_index"]

DEFAULT_MAX_OPEN_SHARDS = 16


class FeatureCache:
    """Read-only view of a cache folder written by `hfs extract`.

    `max_open_shards`: HDF5 files kept open per process. Each costs a file
    descriptor and HDF5's metadata and chunk caches (about a MB); a read from
    a shard not open costs an open (~1 ms). Training reads shards in random
    order, so more handles buy little unless they approach the shard count.
    """

    def __init__(self, path: str | Path, max_open_shards: int = DEFAULT_MAX_OPEN_SHARDS):
        if max_open_shards < 1:
            raise ValueError(f"max_open_shards must be >= 1, got {max_open_shards}")
        self.path = Path(path)
        self.max_open_shards = max_open_shards
        if not (self.path / PLAN_FILE).exists():
            raise CacheError(f"{self.path}: no {PLAN_FILE}; is this a cache made by `hfs extract --out {self.path}`?")
        self.config: dict[str, Any] = read_config(self.path)
        self._reset_handles()
        self._index: ShardIndex | None = load_index(self.path)

    def _reset_handles(self) -> None:
        self._files: OrderedDict[str, h5py.File] = OrderedDict()  # shard -> handle, least recently used first
        self._pid = os.getpid()
        self._inherited: list[h5py.File] = []

    @property
    def _idx(self) -> ShardIndex:
        if self._index is None:  # unpickled: map the index on first use
            self._index = load_index(self.path)
        return self._index

    @property
    def index(self) -> pa.Table:
        """Every index row (any status), INDEX_SCHEMA, in shard order (zero-copy view)."""
        return self._idx.to_table()

    @property
    def plan(self):
        """The extraction plan (`cache.plan.Plan`: config and shard → videos), read on each access."""
        from hfs.cache.plan import load_plan

        return load_plan(self.path)

    # -- index ---------------------------------------------------------------
    def __contains__(self, video_id: object) -> bool:
        if not isinstance(video_id, str):
            return False
        i = self._idx.find(video_id)
        return i >= 0 and bool(self._idx.ok[i])

    def __len__(self) -> int:
        """Number of videos with status "ok"."""
        return self._idx.n_ok

    def video_ids(self, status: str | None = "ok") -> list[str]:
        """Ids with `status` ("ok", "error"; None: all), in shard order."""
        idx = self._idx
        ids = idx.to_table().column("video_id")
        if status is None:
            return ids.to_pylist()
        if status == "ok":
            mask = pa.array(idx.ok.view(np.bool_))
        else:
            mask = pc.equal(idx.to_table().column("status"), status).fill_null(False)
        return ids.filter(mask).to_pylist()

    def _position(self, video_id: str) -> int:
        i = self._idx.find(video_id)
        if i < 0:
            raise KeyError(f"video {video_id!r} is not in the cache {self.path} (not extracted yet?)")
        return i

    def row(self, video_id: str) -> dict:
        """The index row of a video (any status); KeyError with a hint if absent."""
        return self._idx.row_dict(self._position(video_id))

    def status_counts(self) -> Counter:
        counts = pc.value_counts(self._idx.to_table().column("status"))
        return Counter({c["values"]: c["counts"] for c in counts.to_pylist()})

    # -- arrays --------------------------------------------------------------
    def _handles(self) -> OrderedDict[str, h5py.File]:
        """This process's open HDF5 files. After a fork the inherited ones belong to the
        parent: kept referenced (never used, never closed here) and a new set starts."""
        if os.getpid() != self._pid:
            inherited = self._inherited + list(self._files.values())
            self._reset_handles()
            self._inherited = inherited
        return self._files

    def _file(self, shard: str) -> h5py.File:
        files = self._handles()
        f = files.get(shard)
        if f is not None:
            files.move_to_end(shard)
            return f
        while len(files) >= self.max_open_shards:
            _, oldest = files.popitem(last=False)
            oldest.close()
        f = files[shard] = h5py.File(h5_path(self.path, shard), "r")
        return f

    def _locate(self, video_id: str) -> tuple[h5py.File, int]:
        idx = self._idx
        i = self._position(video_id)
        if not idx.ok[i]:
            raise KeyError(f"video {video_id!r} failed extraction: {idx.error(i)}")
        return self._file(idx.shards[idx.shard_code[i]]), int(idx.row[i])

    def features(self, video_id: str) -> np.ndarray:
        """CLIP image embeddings before normalisation, [F, D] float16."""
        f, i = self._locate(video_id)
        return f["features"][i]

    def timestamps(self, video_id: str) -> np.ndarray:
        """Seconds (in the source file's time) of the F sampled frames, [F] float32."""
        f, i = self._locate(video_id)
        return f["timestamps"][i]

    def frames(self, video_id: str, indices: Iterable[int]) -> list[bytes]:
        """JPEG bytes of the teacher frames at `indices` of the F-frame grid."""
        f, i = self._locate(video_id)
        if "frames" not in f:
            raise CacheError(f"{self.path}: extracted with --frames none; no teacher frames stored")
        ds = f["frames"]
        indices = [int(j) for j in indices]
        if len(indices) > 8:  # one read of the row beats many small ones (128 frames: 2.8 ms vs 8 ms)
            row = ds[i]
            return [row[j].tobytes() for j in indices]
        return [ds[i, j].tobytes() for j in indices]

    def packed_frames(self, video_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All F teacher JPEGs of a video in one buffer: (bytes uint8 [total], offsets int64 [F + 1]);
        frame j is ``bytes[offsets[j]:offsets[j + 1]]``. One read and one copy: what a training
        DataLoader worker sends (one array crosses to the training process, not F)."""
        f, i = self._locate(video_id)
        if "frames" not in f:
            raise CacheError(f"{self.path}: extracted with --frames none; no teacher frames stored")
        row = f["frames"][i]
        offsets = np.zeros(len(row) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in row], out=offsets[1:])
        return np.concatenate(row), offsets

    def batch_features(self, video_ids: Sequence[str]) -> np.ndarray:
        """Features of several videos, [B, F, D] float16."""
        return np.stack([self.features(v) for v in video_ids])

    def close(self) -> None:
        """Close this process's HDF5 files (later reads reopen them)."""
        files = self._handles()
        while files:
            files.popitem(last=False)[1].close()

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        # small on purpose: a spawned DataLoader worker receives this, and maps the index itself
        return {"path": str(self.path), "max_open_shards": self.max_open_shards, "config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.path = Path(state["path"])
        self.max_open_shards = state["max_open_shards"]
        self.config = state["config"]
        self._reset_handles()
        self._index = None
