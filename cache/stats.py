"""`stats.json`: a summary of the whole cache, recomputed from the shard indices."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from hfs.cache.format import STATS_FILE, atomic_write_json
from hfs.cache.reader import read_index


def error_kind(message: str) -> str:
    """Group an error message by its reason, without the file-specific detail."""
    head = message.split(":", 1)[0].strip()
    return head[:80] or "unknown error"


def summarize(cache_dir: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts and totals over every finished shard of `cache_dir`."""
    rows = read_index(cache_dir).to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    errors = Counter(error_kind(r["error"]) for r in rows if r["status"] != "ok")
    decode_s = sum(r["decode_s"] or 0.0 for r in rows)
    encode_s = sum(r["encode_s"] or 0.0 for r in rows)
    frames = sum(r["frames_decoded"] or 0 for r in ok)
    stats = {
        "videos": len(rows),
        "ok": len(ok),
        "error": len(rows) - len(ok),
        "errors_by_reason": dict(errors.most_common()),
        "shards_done": len({r["shard"] for r in rows}),
        "frames": frames,
        "decode_s": round(decode_s, 3),
        "encode_s": round(encode_s, 3),
        "hours_of_video": round(sum(r["duration"] or 0.0 for r in ok) / 3600, 4),
    }
    stats.update(extra or {})
    return stats


def write_stats(cache_dir: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    stats = summarize(cache_dir, extra)
    atomic_write_json(Path(cache_dir) / STATS_FILE, stats)
    return stats
