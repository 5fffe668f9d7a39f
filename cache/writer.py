"""Writing one shard: HDF5 under a temporary name then renamed, Parquet index last."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hfs.cache.format import (
    FORMAT_VERSION,
    INDEX_SCHEMA,
    SHARD_PREFIX,
    h5_path,
    index_path,
    temp_path_for,
)

log = logging.getLogger(__name__)


@dataclass
class VideoResult:
    """What extraction produced for one planned video (ok or error)."""

    video_id: str
    path: str
    start: float | None = None
    end: float | None = None
    status: str = "ok"
    error: str = ""
    features: np.ndarray | None = None  # [F, D] float16
    timestamps: np.ndarray | None = None  # [F] float32 seconds
    frames: Sequence[bytes] | None = None  # F JPEGs for the teacher, or None
    duration: float = float("nan")
    fps: float = float("nan")
    width: int = 0
    height: int = 0
    frames_decoded: int = 0
    distinct_frames: int = 0
    decoder: str = ""
    decode_s: float = 0.0
    encode_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, video: dict, reason: str, **kw: Any) -> "VideoResult":
        reason = " ".join(str(reason).split()) or "unknown error"
        return cls(video["video_id"], video["path"], video.get("start"), video.get("end"),
                   status="error", error=reason, **kw)


def write_shard(cache_dir: str | Path, shard: str, results: Sequence[VideoResult], attrs: dict[str, Any]) -> Path:
    """Write `shard`'s HDF5 file and then its Parquet index, each atomically.

    Only `ok` results get an HDF5 row; every result gets an index row. The
    index is renamed into place last, so a reader (which trusts only the
    index) never sees a half-written shard. Returns the index path.
    """
    cache_dir = Path(cache_dir)
    ok = [r for r in results if r.status == "ok"]
    final_h5 = h5_path(cache_dir, shard)
    tmp_h5 = temp_path_for(final_h5)
    try:
        _write_h5(tmp_h5, ok, attrs)
        os.replace(tmp_h5, final_h5)
    except BaseException:
        tmp_h5.unlink(missing_ok=True)
        raise
    rows = {name: [] for name in INDEX_SCHEMA.names}
    row_of = {r.video_id: i for i, r in enumerate(ok)}
    for r in results:
        values = {
            "video_id": r.video_id, "path": r.path, "start": r.start, "end": r.end, "shard": shard,
            "row": row_of.get(r.video_id, -1) if r.status == "ok" else -1, "status": r.status,
            "error": r.error, "duration": r.duration, "fps": r.fps, "width": r.width,
            "height": r.height, "frames_decoded": r.frames_decoded,
            "distinct_frames": r.distinct_frames, "decoder": r.decoder,
            "decode_s": r.decode_s, "encode_s": r.encode_s,
        }
        for k, v in values.items():
            rows[k].append(v)
    table = pa.Table.from_pydict(rows, schema=INDEX_SCHEMA)
    final_idx = index_path(cache_dir, shard)
    tmp_idx = temp_path_for(final_idx)
    try:
        pq.write_table(table, tmp_idx)
        os.replace(tmp_idx, final_idx)
    except BaseException:
        tmp_idx.unlink(missing_ok=True)
        raise
    return final_idx


def _write_h5(path: Path, ok: Sequence[VideoResult], attrs: dict[str, Any]) -> None:
    n_frames = int(attrs["frames"])
    dim = int(attrs["embed_dim"])
    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = "none" if v is None else v
        f.attrs["format_version"] = FORMAT_VERSION
        f.create_dataset("video_ids", data=np.array([r.video_id for r in ok], dtype=object),
                         dtype=h5py.string_dtype())
        feats = f.create_dataset("features", shape=(len(ok), n_frames, dim), dtype=np.float16,
                                 chunks=(1, n_frames, dim) if ok else None)
        times = f.create_dataset("timestamps", shape=(len(ok), n_frames), dtype=np.float32)
        store_frames = bool(attrs.get("teacher_frames")) and ok
        if store_frames:
            jpegs = f.create_dataset("frames", shape=(len(ok), n_frames), dtype=h5py.vlen_dtype(np.uint8))
        for i, r in enumerate(ok):
            feats[i] = r.features
            times[i] = r.timestamps
            if store_frames:
                jpegs[i] = [np.frombuffer(b, dtype=np.uint8) for b in r.frames]


def clean_stale_files(cache_dir: str | Path) -> list[Path]:
    """Remove what a killed run may have left: temporary files and HDF5 shards
    without an index (they will be rewritten). Returns what was removed."""
    cache_dir = Path(cache_dir)
    removed = []
    for p in cache_dir.glob(".*.tmp-*"):
        p.unlink(missing_ok=True)
        removed.append(p)
    for p in cache_dir.glob(f"{SHARD_PREFIX}*.h5"):
        if not index_path(cache_dir, p.stem).exists():
            p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        log.info("removed %d leftover file(s) of an interrupted run", len(removed))
    return removed
