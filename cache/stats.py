"""Summaries of extraction: per shard as it finishes, merged per run, and `stats.json`
for the whole cache.

Error messages name files, sizes and times, so counting them as they are
would give one row per video. `error_kind` reduces a message to its reason
("cannot open", "window start #s is not before the end of the video (#s)"),
and a summary shows the `MAX_REASONS` most common kinds and how many more.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow.compute as pc

from hfs.cache.format import STATS_FILE, atomic_write_json
from hfs.cache.index import load_index

MAX_REASONS = 10
"""Error kinds listed one by one in a summary; the rest are counted as "N more"."""

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"(?<![A-Za-z_\d])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.I)  # not the 264 of h264
_HEAD = re.compile(r":\s")  # "reason: detail"; a colon inside a path or an address (tcp://, C:\) is not one


def error_kind(message: str) -> str:
    """The reason of an error message without its file-specific detail.

    The text before the first ": " (the detail after it names a path or
    quotes a library), with quoted names and numbers replaced by `'…'` and
    `#`, at most 80 characters.
    """
    head = _HEAD.split(message or "", maxsplit=1)[0]
    head = _NUMBER.sub("#", _QUOTED.sub("'…'", head))
    return " ".join(head.split())[:80] or "unknown error"


def top_reasons(errors: Mapping[str, int], limit: int = MAX_REASONS) -> tuple[list[tuple[str, int]], int, int]:
    """(the `limit` most common (kind, videos), kinds left out, videos left out)."""
    ranked = Counter(errors).most_common()
    rest = ranked[limit:]
    return ranked[:limit], len(rest), sum(n for _, n in rest)


def shard_stats(results: Iterable[Any]) -> dict[str, Any]:
    """Counts and totals of one shard's `VideoResult`s (what `run_shard` returns and a run merges)."""
    stats: dict[str, Any] = {"videos": 0, "ok": 0, "error": 0, "frames": 0, "decode_s": 0.0, "encode_s": 0.0,
                             "seconds_of_video": 0.0}
    errors: Counter = Counter()
    for r in results:
        stats["videos"] += 1
        stats["decode_s"] += float(r.decode_s or 0.0)
        stats["encode_s"] += float(r.encode_s or 0.0)
        if r.status == "ok":
            stats["ok"] += 1
            stats["frames"] += int(r.frames_decoded or 0)
            stats["seconds_of_video"] += float(r.duration or 0.0)
        else:
            stats["error"] += 1
            errors[error_kind(r.error)] += 1
    stats["errors_by_reason"] = dict(errors)
    return stats


def summarize(cache_dir: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts and totals over every finished shard of `cache_dir`.

    Column arithmetic on the consolidated index (memory-mapped): only the
    error messages of failed videos become Python objects, never a row.
    """
    index = load_index(cache_dir)
    table = index.to_table()
    ok = index.ok.view(np.bool_) if len(index) else np.zeros(0, bool)
    ok_rows = table.filter(ok)
    failed = table.filter(~ok).column("error")
    errors = Counter(error_kind(m or "") for m in failed.to_pylist())

    def total(column, rows=table) -> float:
        return float(pc.sum(rows.column(column)).as_py() or 0.0)

    stats = {
        "videos": len(index),
        "ok": int(ok.sum()),
        "error": len(index) - int(ok.sum()),
        "errors_by_reason": dict(errors.most_common()),
        "shards_done": int(np.count_nonzero(np.diff(index.shard_bounds()))),
        "frames": int(total("frames_decoded", ok_rows)),
        "decode_s": round(total("decode_s"), 3),
        "encode_s": round(total("encode_s"), 3),
        "hours_of_video": round(total("duration", ok_rows) / 3600, 4),
    }
    stats.update(extra or {})
    return stats


def write_stats(cache_dir: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    stats = summarize(cache_dir, extra)
    atomic_write_json(Path(cache_dir) / STATS_FILE, stats)
    return stats
