"""Reading the feature cache: `FeatureCache(path)`.

HDF5 files are opened lazily, once per process (keyed by pid), so a cache
object created before a DataLoader forks its workers is safe to use in them.
No torch here.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hfs.cache.format import INDEX_SCHEMA, PLAN_FILE, SHARD_PREFIX, CacheError, h5_path, read_json


def read_index(cache_dir: str | Path) -> pa.Table:
    """All finished shards' index rows as one table (empty table if none)."""
    files = sorted(Path(cache_dir).glob(f"{SHARD_PREFIX}*.parquet"))
    if not files:
        return INDEX_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=INDEX_SCHEMA) for f in files])


class FeatureCache:
    """Read-only view of a cache folder written by `hfs extract`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        plan_file = self.path / PLAN_FILE
        if not plan_file.exists():
            raise CacheError(f"{self.path}: no {PLAN_FILE}; is this a cache made by `hfs extract --out {self.path}`?")
        self.plan = read_json(plan_file)
        self.config: dict[str, Any] = self.plan["config"]
        self.index = read_index(self.path)
        self._rows: dict[str, dict] = {r["video_id"]: r for r in self.index.to_pylist()}
        self._files: dict[str, h5py.File] = {}
        self._pid = os.getpid()

    # -- index ---------------------------------------------------------------
    def __contains__(self, video_id: str) -> bool:
        row = self._rows.get(video_id)
        return row is not None and row["status"] == "ok"

    def __len__(self) -> int:
        return sum(1 for r in self._rows.values() if r["status"] == "ok")

    def video_ids(self, status: str | None = "ok") -> list[str]:
        return [v for v, r in self._rows.items() if status is None or r["status"] == status]

    def row(self, video_id: str) -> dict:
        """The index row of a video (any status); KeyError with a hint if absent."""
        try:
            return self._rows[video_id]
        except KeyError:
            raise KeyError(f"video {video_id!r} is not in the cache {self.path} (not extracted yet?)") from None

    def status_counts(self) -> Counter:
        return Counter(r["status"] for r in self._rows.values())

    # -- arrays --------------------------------------------------------------
    def _locate(self, video_id: str) -> tuple[h5py.File, int]:
        row = self.row(video_id)
        if row["status"] != "ok":
            raise KeyError(f"video {video_id!r} failed extraction: {row['error']}")
        if os.getpid() != self._pid:  # forked: never share HDF5 handles across processes
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(row["shard"])
        if f is None:
            f = self._files[row["shard"]] = h5py.File(h5_path(self.path, row["shard"]), "r")
        return f, int(row["row"])

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
        return [ds[i, int(j)].tobytes() for j in indices]

    def batch_features(self, video_ids: Sequence[str]) -> np.ndarray:
        return np.stack([self.features(v) for v in video_ids])

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> "FeatureCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"] = {}
        return state
