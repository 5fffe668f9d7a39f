"""The shard plan: which videos go into which shard, decided before any work.

On disk (format 2):

- `plan-shards.jsonl`: one line per shard, in shard order, its videos as
  columns: `{"name": "shard-00000", "video_id": [...], "path": [...],
  "key": [...], "start": [...], "end": [...]}`. Append-only: videos added
  to a cache become new lines at the end, and nothing before them is
  rewritten.
- `plan.json`: the config and how much of that file is the plan
  (`n_shards`, `shards_bytes`), rewritten atomically (it is small) after the
  lines are appended and synced. A run killed between the two leaves lines
  past `shards_bytes`; readers ignore them and the next append cuts them off.
- `config.json`: the config alone (what a reader of the cache needs).

Caches made by format 1 hold every shard inside `plan.json`; they are read
as they are and moved to the append-only file the first time videos are
added to them.

Re-running extraction against an existing cache must use the same config
(an error otherwise that names what differs); videos already planned keep
their shard, new videos are appended in new shards, so a rerun with a
longer manifest extends the cache and redoes nothing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from hfs.cache.format import (
    CONFIG_FILE,
    FORMAT_VERSION,
    PLAN_FILE,
    PLAN_FORMAT_VERSION,
    PLAN_SHARDS_FILE,
    SHARD_PREFIX,
    CacheError,
    atomic_write_json,
    read_json,
    shard_name,
    temp_path_for,
)

log = logging.getLogger(__name__)

_COLUMNS = ("video_id", "path", "key", "start", "end")
_PARQUET = ".parquet"


class ShardSpec:
    """One unit of work: a shard name and the videos it holds (plain dicts
    `{video_id, path, key, start, end}`).

    A shard of a plan read from disk keeps only where its line is and
    reads it when `videos` is asked for, so a plan of a million videos
    costs memory only for the shards still to do.
    """

    __slots__ = ("name", "_videos", "_items", "_load", "_size")

    def __init__(self, name: str, videos: list[dict[str, Any]] | None = None, *, items: Sequence[Any] | None = None,
                 load: Callable[[], list[dict[str, Any]]] | None = None, size: int | None = None):
        self.name = name
        self._videos, self._items, self._load = videos, items, load
        self._size = size if size is not None else len(videos if videos is not None else items or ())

    @property
    def videos(self) -> list[dict[str, Any]]:
        if self._videos is not None:
            return self._videos
        if self._items is not None:
            return [_video_entry(v) for v in self._items]
        return self._load()

    def __len__(self) -> int:
        return self._size

    def to_json(self) -> dict:
        return {"name": self.name, "videos": self.videos}

    def line(self) -> bytes:
        """This shard as one line of `plan-shards.jsonl`."""
        columns: dict[str, Any] = {"name": self.name}
        if self._items is not None:
            for c in _COLUMNS:
                columns[c] = [getattr(v, c) for v in self._items]
        else:
            videos = self.videos
            for c in _COLUMNS:
                columns[c] = [v.get(c) for v in videos]
        return (json.dumps(columns, separators=(",", ":"), ensure_ascii=False) + "\n").encode()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShardSpec) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"ShardSpec({self.name!r}, {len(self)} videos)"


def _video_entry(v: Any) -> dict:
    return {"video_id": v.video_id, "path": v.path, "key": v.key, "start": v.start, "end": v.end}


def _videos_of_line(line: bytes | str) -> tuple[str, list[dict[str, Any]]]:
    obj = json.loads(line)
    cols = [obj[c] for c in _COLUMNS]
    return obj["name"], [dict(zip(_COLUMNS, row)) for row in zip(*cols)]


class Plan:
    """The config and the shards, in order. `video_ids` is every planned id."""

    def __init__(self, config: dict[str, Any], shards: list[ShardSpec] | None = None,
                 format_version: int = PLAN_FORMAT_VERSION, video_ids: set[str] | None = None):
        self.config = config
        self.shards = shards if shards is not None else []
        self.format_version = format_version
        self._ids = video_ids

    @property
    def video_ids(self) -> set[str]:
        if self._ids is None:
            self._ids = {v["video_id"] for s in self.shards for v in s.videos}
        return self._ids

    @property
    def n_videos(self) -> int:
        return sum(len(s) for s in self.shards)

    def to_json(self) -> dict:
        """The whole plan as one object (format 1's layout; small plans, tests)."""
        return {"format_version": FORMAT_VERSION, "config": self.config, "shards": [s.to_json() for s in self.shards]}

    @classmethod
    def from_json(cls, obj: dict) -> "Plan":
        """A plan from format 1's `plan.json` (every shard inline)."""
        return cls(config=obj["config"], shards=[ShardSpec(s["name"], list(s["videos"])) for s in obj["shards"]],
                   format_version=obj.get("format_version", 0))

    def pending(self, cache_dir: str | Path) -> list[ShardSpec]:
        """Shards whose Parquet index (the done-marker) does not exist yet (one directory listing)."""
        return [s for s in self.shards if s.name not in _done_shards(cache_dir)] if self.shards else []


def _done_shards(cache_dir: str | Path) -> set[str]:
    try:
        with os.scandir(cache_dir) as entries:
            return {e.name[: -len(_PARQUET)] for e in entries
                    if e.name.startswith(SHARD_PREFIX) and e.name.endswith(_PARQUET)}
    except FileNotFoundError:
        return set()


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable list of keys whose values differ between two configs."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"{key}: cache has {old.get(key)!r}, this run asks for {new.get(key)!r}")
    return diffs


# -- reading -----------------------------------------------------------------------------


def _read_header(cache_dir: Path) -> dict | None:
    path = cache_dir / PLAN_FILE
    if not path.exists():
        return None
    obj = read_json(path)
    version = obj.get("format_version")
    if version not in (FORMAT_VERSION, PLAN_FORMAT_VERSION):
        raise CacheError(f"{path}: cache format version {version} but this hfs reads {FORMAT_VERSION} "
                         f"and {PLAN_FORMAT_VERSION}; extract into a new folder")
    return obj


def _read_shards_file(cache_dir: Path, header: dict) -> tuple[list[ShardSpec], set[str]]:
    """The shards `plan.json` commits to (its first `shards_bytes` bytes), each reading its own
    line again when its videos are asked for, and every planned id."""
    path = cache_dir / header["shards_file"]
    size, n = int(header["shards_bytes"]), int(header["n_shards"])
    shards: list[ShardSpec] = []
    ids: set[str] = set()
    offset = 0
    try:
        with open(path, "rb") as f:
            while offset < size:  # line by line: only the ids stay in memory
                line = f.readline(size - offset)
                if not line:
                    break
                obj = json.loads(line)
                ids.update(obj["video_id"])
                shards.append(ShardSpec(obj["name"], load=_line_loader(path, offset, len(line)),
                                        size=len(obj["video_id"])))
                offset += len(line)
    except FileNotFoundError:
        raise CacheError(f"{path} is missing but {cache_dir / PLAN_FILE} lists {n} shard(s); "
                         "the cache is damaged: extract into a new folder") from None
    except json.JSONDecodeError as e:
        raise CacheError(f"{path}: shard line {len(shards) + 1} is not valid JSON ({e}); "
                         "the cache is damaged: extract into a new folder") from None
    if offset < size or len(shards) != n:
        raise CacheError(f"{path}: {len(shards)} shard line(s) where {cache_dir / PLAN_FILE} says {n}; "
                         "the cache is damaged: extract into a new folder")
    return shards, ids


def _line_loader(path: Path, offset: int, length: int) -> Callable[[], list[dict[str, Any]]]:
    def load() -> list[dict[str, Any]]:
        with open(path, "rb") as f:
            f.seek(offset)
            return _videos_of_line(f.read(length))[1]

    return load


def load_plan(cache_dir: str | Path) -> Plan | None:
    """The plan of `cache_dir` (format 1 or 2), or None when there is none."""
    cache_dir = Path(cache_dir)
    header = _read_header(cache_dir)
    return None if header is None else _plan_of(cache_dir, header)


def _plan_of(cache_dir: Path, header: dict) -> Plan:
    if header["format_version"] == FORMAT_VERSION:
        return Plan.from_json(header)
    shards, ids = _read_shards_file(cache_dir, header)
    return Plan(config=header["config"], shards=shards, format_version=PLAN_FORMAT_VERSION, video_ids=ids)


def write_config(cache_dir: str | Path, config: dict[str, Any]) -> None:
    """Write `config.json` (atomically): the plan's config without the video list."""
    atomic_write_json(Path(cache_dir) / CONFIG_FILE, {"format_version": FORMAT_VERSION, "config": config})


def read_config(cache_dir: str | Path) -> dict[str, Any]:
    """The config a cache was made with, from `config.json`.

    Caches made before config.json existed have it only in `plan.json`: it is
    read from there (parsing every planned video once) and config.json is
    written for the next reader when the folder is writable.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / CONFIG_FILE
    if path.exists():
        return read_json(path)["config"]
    config = read_json(cache_dir / PLAN_FILE)["config"]
    if os.access(cache_dir, os.W_OK):
        try:
            write_config(cache_dir, config)
        except OSError as e:  # a read-only mount that os.access did not see: stay read-only
            log.debug("cannot write %s: %s", path, e)
    return config


# -- writing -----------------------------------------------------------------------------


def _write_header(cache_dir: Path, config: dict[str, Any], n_shards: int, size: int) -> None:
    atomic_write_json(cache_dir / PLAN_FILE, {"format_version": PLAN_FORMAT_VERSION, "config": config,
                                              "shards_file": PLAN_SHARDS_FILE, "n_shards": n_shards,
                                              "shards_bytes": size})


def _write_lines(path: Path, shards: Iterable[ShardSpec]) -> int:
    """Write the shards' lines to `path` atomically (temporary name, fsync, rename); returns its size."""
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as f:
            for s in shards:
                f.write(s.line())
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def _append_lines(path: Path, committed: int, shards: Iterable[ShardSpec]) -> int:
    """Append the shards' lines after the first `committed` bytes of `path` (dropping what a
    killed run may have left past them), fsync; returns the new committed size."""
    with open(path, "r+b") as f:
        f.truncate(committed)
        f.seek(committed)
        for s in shards:
            f.write(s.line())
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def plan_extraction(
    cache_dir: str | Path, videos: Iterable[Any], config: dict[str, Any], shard_size: int
) -> tuple[Plan, int]:
    """Load or create the plan (and `config.json`), appending shards for videos not yet planned.

    `videos` are `VideoItem`s (anything with video_id, path, key, start, end).
    Returns the plan and the number of newly planned videos. Raises
    `CacheError` naming every difference when the cache was made with
    another config. New videos are sorted by id, so the plan does not depend
    on manifest order. Appending writes only the new shards' lines and the
    small `plan.json`.
    """
    if shard_size < 1:
        raise ValueError(f"shard size must be >= 1, got {shard_size}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    header = _read_header(cache_dir)
    plan = _plan_of(cache_dir, header) if header is not None else Plan(config=dict(config))
    if header is not None:
        diffs = config_differences(plan.config, config)
        if diffs:
            raise CacheError(
                f"{cache_dir / PLAN_FILE} was made with another config:\n  - "
                + "\n  - ".join(diffs)
                + "\nUse a new --out folder, or rerun with the cache's settings."
            )
    known = plan.video_ids
    fresh = {v.video_id: v for v in videos if v.video_id not in known}
    new = [fresh[k] for k in sorted(fresh)]
    added = [ShardSpec(shard_name(len(plan.shards) + j), items=new[i : i + shard_size])
             for j, i in enumerate(range(0, len(new), shard_size))]
    shards_path = cache_dir / PLAN_SHARDS_FILE
    if header is not None and header["format_version"] == PLAN_FORMAT_VERSION:
        if added:
            size = _append_lines(shards_path, int(header["shards_bytes"]), added)
            _write_header(cache_dir, plan.config, len(plan.shards) + len(added), size)
    elif added or header is None:
        # a new cache, or a format-1 cache that grows: every shard into the append-only file once
        size = _write_lines(shards_path, plan.shards + added)
        _write_header(cache_dir, plan.config, len(plan.shards) + len(added), size)
        if header is not None:
            log.info("%s: plan moved to %s (format %d)", cache_dir, PLAN_SHARDS_FILE, PLAN_FORMAT_VERSION)
    plan.shards.extend(added)
    known.update(fresh)
    if added or header is None:
        plan.format_version = PLAN_FORMAT_VERSION
    if added or header is None or not (cache_dir / CONFIG_FILE).exists():  # also brings older caches up to date
        write_config(cache_dir, plan.config)
    return plan, len(new)
