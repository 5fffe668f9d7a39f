"""The shard plan: which videos go into which shard, decided before any work.

The plan is saved as `plan.json` next to the shards, and its config alone
as `config.json` (a reader needs only the config, and plan.json lists every
video: ~200 MB at 1M videos). Re-running extraction
against an existing cache must use the same config (an error otherwise that
names what differs); videos already planned keep their shard, new videos are
appended in new shards, so a rerun with a longer manifest extends the cache
and redoes nothing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from hfs.cache.format import (
    CONFIG_FILE,
    FORMAT_VERSION,
    PLAN_FILE,
    CacheError,
    atomic_write_json,
    index_path,
    read_json,
    shard_name,
)

log = logging.getLogger(__name__)


@dataclass
class ShardSpec:
    """One unit of work: a shard name and the videos it holds (plain dicts)."""

    name: str
    videos: list[dict[str, Any]]  # {video_id, path, key, start, end}

    def to_json(self) -> dict:
        return {"name": self.name, "videos": self.videos}


@dataclass
class Plan:
    config: dict[str, Any]
    shards: list[ShardSpec] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    @property
    def video_ids(self) -> set[str]:
        return {v["video_id"] for s in self.shards for v in s.videos}

    def to_json(self) -> dict:
        return {
            "format_version": self.format_version,
            "config": self.config,
            "shards": [s.to_json() for s in self.shards],
        }

    @classmethod
    def from_json(cls, obj: dict) -> "Plan":
        return cls(
            config=obj["config"],
            shards=[ShardSpec(s["name"], list(s["videos"])) for s in obj["shards"]],
            format_version=obj.get("format_version", 0),
        )

    def pending(self, cache_dir: str | Path) -> list[ShardSpec]:
        """Shards whose Parquet index (the done-marker) does not exist yet."""
        return [s for s in self.shards if not index_path(cache_dir, s.name).exists()]


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable list of keys whose values differ between two configs."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            diffs.append(f"{key}: cache has {old.get(key)!r}, this run asks for {new.get(key)!r}")
    return diffs


def _video_entry(v: Any) -> dict:
    return {"video_id": v.video_id, "path": v.path, "key": v.key, "start": v.start, "end": v.end}


def load_plan(cache_dir: str | Path) -> Plan | None:
    path = Path(cache_dir) / PLAN_FILE
    if not path.exists():
        return None
    obj = read_json(path)
    if obj.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"{path}: cache format version {obj.get('format_version')} but this hfs writes "
            f"{FORMAT_VERSION}; extract into a new folder"
        )
    return Plan.from_json(obj)


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


def plan_extraction(
    cache_dir: str | Path, videos: Iterable[Any], config: dict[str, Any], shard_size: int
) -> tuple[Plan, int]:
    """Load or create `plan.json` (and `config.json`), appending shards for videos not yet planned.

    `videos` are `VideoItem`s (anything with video_id, path, key, start, end).
    Returns the plan and the number of newly planned videos. Raises
    `CacheError` naming every difference when the cache was made with
    another config. New videos are sorted by id, so the plan does not depend
    on manifest order.
    """
    if shard_size < 1:
        raise ValueError(f"shard size must be >= 1, got {shard_size}")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    plan = load_plan(cache_dir)
    if plan is None:
        plan = Plan(config=dict(config))
    else:
        diffs = config_differences(plan.config, config)
        if diffs:
            raise CacheError(
                f"{cache_dir / PLAN_FILE} was made with another config:\n  - "
                + "\n  - ".join(diffs)
                + "\nUse a new --out folder, or rerun with the cache's settings."
            )
    known = plan.video_ids
    new = sorted({v.video_id: v for v in videos if v.video_id not in known}.values(), key=lambda v: v.video_id)
    for i in range(0, len(new), shard_size):
        chunk = new[i : i + shard_size]
        plan.shards.append(ShardSpec(shard_name(len(plan.shards)), [_video_entry(v) for v in chunk]))
    wrote_plan = bool(new) or not (cache_dir / PLAN_FILE).exists()
    if wrote_plan:
        atomic_write_json(cache_dir / PLAN_FILE, plan.to_json())
    if wrote_plan or not (cache_dir / CONFIG_FILE).exists():  # also brings older caches up to date
        write_config(cache_dir, plan.config)
    return plan, len(new)
