"""The on-disk layout of the feature cache (DESIGN.md, Stage 1 step 5).

```
cache/
  plan-shards.jsonl       shard -> videos, one line per shard, append-only
                          (cache/plan.py; format 1 kept them in plan.json)
  plan.json               config + how much of plan-shards.jsonl is the plan
                          (small; rewritten atomically after each append)
  config.json             the config alone (what readers need)
  shard-00000.h5          features [n,F,D] f16, timestamps [n,F] f32,
                          frames [n,F] JPEG bytes (optional), video_ids [n]
  shard-00000.parquet     one row per planned video, written LAST: a shard is
                          done iff its index exists
  index.arrow             every finished shard's index rows in one Arrow IPC
                          file (memory-mapped by readers), plus the shards it
                          covers; derived data, rebuilt from the shard indexes
                          when stale (cache/index.py)
  stats.json              summary of the whole cache
```
Rows of videos that failed have `status="error"` and `row=-1`: they have no
entry in the HDF5 file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa

FORMAT_VERSION = 1
PLAN_FORMAT_VERSION = 2
"""plan.json with the shards in PLAN_SHARDS_FILE; format 1 (FORMAT_VERSION) held them inline."""
PLAN_FILE = "plan.json"
PLAN_SHARDS_FILE = "plan-shards.jsonl"
CONFIG_FILE = "config.json"
INDEX_FILE = "index.arrow"
STATS_FILE = "stats.json"
SHARD_PREFIX = "shard-"

INDEX_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("path", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("shard", pa.string()),
        ("row", pa.int32()),
        ("status", pa.string()),  # "ok" | "error"
        ("error", pa.string()),  # one-line reason, "" when ok
        ("duration", pa.float64()),  # seconds of the clip (window if start/end)
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("frames_decoded", pa.int32()),  # targets that got a frame
        ("distinct_frames", pa.int32()),  # distinct source frames among them
        ("decoder", pa.string()),  # backend that produced the frames
        ("decode_s", pa.float64()),
        ("encode_s", pa.float64()),
    ]
)


class CacheError(RuntimeError):
    """A cache that cannot be used as asked (wrong config, damaged, missing)."""


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}"


def h5_path(cache_dir: str | Path, shard: str) -> Path:
    return Path(cache_dir) / f"{shard}.h5"


def index_path(cache_dir: str | Path, shard: str) -> Path:
    return Path(cache_dir) / f"{shard}.parquet"


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (``os.umask`` sets it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str | Path, directory: bool = False) -> None:
    """Give a ``tempfile`` file or folder the mode a plain ``open``/``mkdir`` would have.

    ``mkstemp`` creates 0600 and ``mkdtemp`` 0700 whatever the umask, and the rename keeps
    the mode: a cache or run written by one account could not be read by another on a
    shared filesystem (a cluster's workers, a colleague's evaluation).
    """
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def temp_path_for(final: Path) -> Path:
    """A unique temporary sibling of `final` (same filesystem, so rename is atomic).

    The `.tmp-` infix marks it for cleanup after a crash; readers never glob it. Its mode
    is the umask's (``publish_mode``), so the renamed file is readable as any other.
    """
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent)
    os.close(fd)
    publish_mode(name)
    return Path(name)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CacheError(f"{path}: not valid JSON ({e}); delete it to rebuild") from e
