"""The on-disk feature cache: sharded HDF5 + Parquet index (no torch here)."""

from hfs.cache.format import FORMAT_VERSION, CacheError
from hfs.cache.index import consolidate_index, read_index
from hfs.cache.plan import Plan, ShardSpec, config_differences, load_plan, plan_extraction, read_config
from hfs.cache.reader import FeatureCache
from hfs.cache.stats import summarize, write_stats
from hfs.cache.writer import VideoResult, clean_stale_files, write_shard

__all__ = [
    "FORMAT_VERSION", "CacheError", "Plan", "ShardSpec", "config_differences", "load_plan",
    "plan_extraction", "read_config", "FeatureCache", "consolidate_index", "read_index", "summarize",
    "write_stats", "VideoResult", "clean_stale_files", "write_shard",
]
