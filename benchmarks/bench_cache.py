"""Opening the feature cache at scale: seconds and resident memory per process.

    python benchmarks/bench_cache.py [--rows 1000000] [--shards 31250]
        [--readable-shards 24] [--work DIR] [--fresh] [--skip-baseline]
        [--repeats 3] [--json out.json]

Synthesises the index of a cache as `hfs extract` leaves it, without the
features: `plan.json` listing every video (written by `plan_extraction`
itself, so also `config.json`), one Parquet index per shard with the real
INDEX_SCHEMA (98 % ok rows, 2 % error rows with real error messages), and
HDF5 files (128 × 512 float16 features, timestamps, small stand-in JPEGs) for
24 shards spread over the id range, enough for reads after a fork to cycle
through more files than `FeatureCache` keeps open. The folder (default
benchmarks/_work/cache_<rows>_<shards>/) is made once and reused; `--fresh`
remakes it.

Each measurement runs in a fresh Python process (page cache warm: the files
were just written or read) and reports the seconds of the open itself (after
imports) and the peak resident set of the process (VmHWM, imports
included; `import MB` is the resident set after the imports alone):

- `old`: the reader before this change, inline: parse plan.json for the
  config, read every shard's Parquet file and concatenate them, turn the rows
  into a dict of Python dicts (`--skip-baseline` leaves it out: 40-70 s and
  2 GB at 1M rows on a 2-core machine).
- `new first open`: `FeatureCache(path)` with no `index.arrow` yet: reads
  every Parquet file once and writes the consolidated index (what the end of
  `hfs extract` does; a reader pays it only for shards finished since).
- `new open`: `FeatureCache(path)` again: the steady state, what every
  DataLoader worker pays.
- `fork child`: a child forked after the open (a DataLoader worker with the
  default start method) looks ids up and reads features, timestamps and frames
  from every readable shard, twice; its peak resident set, and its private
  (unshared) memory from /proc/self/smaps_rollup.

Lookups: membership tests (`id in cache`; the old reader: a dict lookup and
a status check) of 10,000 ids, 1 % of them absent, in µs per id. `pickle
KB`: the size of a pickled FeatureCache (what a DataLoader with the spawn
start method sends each worker). `private MB`: memory of the process not
shared with any other (smaps_rollup). Goal: the new open under 10 s and
under 300 MB resident, in the opening process and in the forked child.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import random
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from _common import write_json

HERE = Path(__file__).resolve().parent
SYNTH_VERSION = 1
READABLE_SHARDS = 24
FRAMES, DIM = 128, 512
CONFIG = {"frames": FRAMES, "size": 224, "teacher_frame_size": 448, "model": "ViT-B-32", "pretrained": "openai",
          "preset": None, "jpeg_quality": 90, "embed_dim": DIM}
SOURCES = ("academic_source/youtube", "liwei_youtube_videos/videos/youtube_video_2024", "ytb_clips/activitynet",
           "perception_test/videos", "NextQA/NExTVideo", "ego4d/v2/clips", "charades/Charades_v1_480")
ERRORS = ("cannot open: Invalid data found when processing input", "no video stream", "file is empty (0 bytes)",
          "no frame could be decoded", "window start 41.00s is not before the end of the video (39.96s)")
GOAL_S, GOAL_MB = 10.0, 300.0


# --------------------------------------------------------------------------
# The synthetic cache
# --------------------------------------------------------------------------


def _video_items(rows: int, rng: random.Random) -> list:
    """`rows` distinct VideoItems with LLaVA-Video-like paths; 2 % are windows of a longer video."""
    from hfs.manifests.records import VideoItem, make_video_id

    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    items = []
    for i in range(rows):
        src = SOURCES[i % len(SOURCES)]
        name = "".join(rng.choice(alphabet) for _ in range(11 if i % 3 else 24))
        key = f"{src}/{i // 5000:04d}/{name}.mp4"
        start, end = (None, None) if i % 50 else (float(i % 600), float(i % 600 + 30))
        items.append(VideoItem(make_video_id(key, start, end), f"/datasets/llava-video-178k/{key}", key, start, end))
    return items


def synthesise(work: Path, rows: int, shards: int, readable_shards: int = READABLE_SHARDS, seed: int = 0) -> dict:
    """Make (or reuse) the synthetic cache in `work`; returns its description (synth.json)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hfs.cache import VideoResult, plan_extraction, write_shard
    from hfs.cache.format import INDEX_SCHEMA, index_path

    marker = work / "synth.json"
    want = {"version": SYNTH_VERSION, "rows": rows, "shards": shards, "readable_shards": readable_shards, "seed": seed}
    if marker.exists() and {k: v for k, v in json.loads(marker.read_text()).items() if k in want} == want:
        return json.loads(marker.read_text())
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    rng = random.Random(seed)
    items = _video_items(rows, rng)
    plan, _ = plan_extraction(work, items, CONFIG, shard_size=math.ceil(rows / shards))
    del items
    # every row of every shard, in plan order, as one table; each shard's index is a slice of it
    npr = np.random.default_rng(seed)
    videos = [v for s in plan.shards for v in s.videos]
    n = len(videos)
    sizes = [len(s.videos) for s in plan.shards]
    ok = npr.random(n) >= 0.02
    shard_of = np.repeat(np.arange(len(sizes)), sizes)
    first = np.repeat(np.cumsum([0] + sizes[:-1]), sizes)
    ok_before = np.concatenate([[0], np.cumsum(ok)])[:-1] - np.concatenate([[0], np.cumsum(ok)])[first]
    errors = [ERRORS[i % len(ERRORS)] for i in range(n)]
    cols = {
        "video_id": [v["video_id"] for v in videos],
        "path": [v["path"] for v in videos],
        "start": [v["start"] for v in videos],
        "end": [v["end"] for v in videos],
        "shard": [plan.shards[s].name for s in shard_of],
        "row": np.where(ok, ok_before, -1).astype(np.int32),
        "status": np.where(ok, "ok", "error").tolist(),
        "error": [("" if k else e) for k, e in zip(ok, errors)],
        "duration": np.where(ok, npr.uniform(5, 600, n), np.nan),
        "fps": np.where(ok, npr.choice([24.0, 25.0, 29.97, 30.0], n), np.nan),
        "width": np.where(ok, 1280, 0).astype(np.int32),
        "height": np.where(ok, 720, 0).astype(np.int32),
        "frames_decoded": np.where(ok, FRAMES, 0).astype(np.int32),
        "distinct_frames": np.where(ok, FRAMES, 0).astype(np.int32),
        "decoder": np.where(ok, "pyav", "").tolist(),
        "decode_s": npr.uniform(0.5, 20, n),
        "encode_s": npr.uniform(0.2, 2, n),
    }
    table = pa.Table.from_pydict(cols, schema=INDEX_SCHEMA)
    del cols
    readable = sorted({round(i * (len(sizes) - 1) / max(1, readable_shards - 1)) for i in range(readable_shards)})
    starts = np.cumsum([0] + sizes)
    attrs = {**CONFIG, "teacher_frames": True, "encoder": CONFIG["model"]}
    for s, spec in enumerate(plan.shards):
        part = table.slice(starts[s], sizes[s])
        if s in readable:  # through the real writer: HDF5 + index
            results = []
            for r in part.to_pylist():
                v = {"video_id": r["video_id"], "path": r["path"], "start": r["start"], "end": r["end"]}
                if r["status"] != "ok":
                    results.append(VideoResult.failed(v, r["error"]))
                    continue
                g = np.random.default_rng(zlib.crc32(r["video_id"].encode()))
                results.append(VideoResult(
                    r["video_id"], r["path"], r["start"], r["end"],
                    features=g.standard_normal((FRAMES, DIM)).astype(np.float16),
                    timestamps=np.linspace(0.5, r["duration"], FRAMES, dtype=np.float32),
                    frames=[bytes(g.integers(0, 256, 64, dtype=np.uint8)) for _ in range(FRAMES)],
                    duration=r["duration"], fps=r["fps"], width=1280, height=720, frames_decoded=FRAMES,
                    distinct_frames=FRAMES, decoder="pyav", decode_s=r["decode_s"], encode_s=r["encode_s"]))
            write_shard(work, spec.name, results, attrs)
        else:
            pq.write_table(part, index_path(work, spec.name))
    ids = table.column("video_id")
    status = table.column("status").to_numpy(zero_copy_only=False)
    pick = npr.choice(n, size=min(n, 9900), replace=False)
    lookups = [ids[int(i)].as_py() for i in pick] + [f"absent-{i:012x}" for i in range(100)]
    readable_ids = [ids[int(i)].as_py() for s in readable
                    for i in [j for j in range(starts[s], starts[s + 1]) if status[j] == "ok"][:2]]
    desc = {**want, "videos": n, "shard_files": len(sizes), "h5_files": len(readable),
            "plan_json_mb": round((work / "plan.json").stat().st_size / 2**20, 1),
            "parquet_mb": round(sum(p.stat().st_size for p in work.glob("shard-*.parquet")) / 2**20, 1),
            "synth_s": round(time.perf_counter() - t0, 1)}
    (work / "lookup_ids.json").write_text(json.dumps(lookups))
    (work / "readable_ids.json").write_text(json.dumps(readable_ids))
    marker.write_text(json.dumps(desc, indent=2))
    return desc


# --------------------------------------------------------------------------
# Measurements (each in a fresh process: `--measure MODE`)
# --------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    """A /proc/self/status memory figure (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    """Peak resident set of this process, MiB: VmHWM. Not ru_maxrss, which Linux carries over
    from the process that started this one (a pytest process with torch loaded: 800 MB)."""
    return _status_mb("VmHWM")


def _private_mb() -> dict:
    """Proportional (Pss) and private (not shared with any process) memory, MiB, from smaps_rollup."""
    out = {}
    try:
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss", "Private_Clean", "Private_Dirty"):
                out[key] = int(rest.split()[0]) / 1024
    except OSError:
        return {}
    return {"pss_mb": round(out.get("Pss", float("nan")), 1),
            "private_mb": round(out.get("Private_Clean", 0) + out.get("Private_Dirty", 0), 1)}


def _time_lookups(contains, ids: list[str]) -> tuple[int, float]:
    t = time.perf_counter()
    found = sum(1 for v in ids if contains(v))
    return found, (time.perf_counter() - t) / len(ids) * 1e6


def _old_open(work: Path) -> tuple[dict, dict]:
    """The reader before index.arrow, inline: plan.json parsed for its config, every shard index
    read (read_index as it was) and its rows turned into a dict of dicts (FeatureCache._rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hfs.cache.format import INDEX_SCHEMA, PLAN_FILE, SHARD_PREFIX

    config = json.loads((work / PLAN_FILE).read_text())["config"]
    files = sorted(work.glob(f"{SHARD_PREFIX}*.parquet"))
    index = pa.concat_tables([pq.read_table(f, schema=INDEX_SCHEMA) for f in files])
    rows = {r["video_id"]: r for r in index.to_pylist()}
    return config, rows


def _fork_child(cache, readable: list[str], lookups: list[str], q) -> None:
    """Body of the forked child: lookups, then per video features + timestamps + 3 frames (`read_ms`)."""
    found, us = _time_lookups(cache.__contains__, lookups)
    t = time.perf_counter()
    checksum = 0.0
    for _ in range(2):  # twice over more shards than max_open_shards: the LRU closes and reopens
        for v in readable:
            checksum += float(cache.features(v)[0, :4].astype(np.float64).sum())
            checksum += float(cache.timestamps(v)[-1])
            checksum += sum(len(b) for b in cache.frames(v, [0, FRAMES // 2, FRAMES - 1]))
    reads = 2 * len(readable)
    q.put({"found": found, "lookup_us": round(us, 2), "read_ms": round((time.perf_counter() - t) / reads * 1e3, 3),
           "reads": reads, "open_files": len(cache._files), "checksum": checksum,
           "peak_mb": round(_peak_mb(), 1), "rss_mb": round(_status_mb("VmRSS"), 1), **_private_mb()})


def measure(mode: str, work: Path) -> dict:
    """One measurement in this (fresh) process; see the module docstring."""
    import multiprocessing as mp

    import pyarrow  # noqa: F401 - imported before the clock starts, as by any user of the cache

    from hfs.cache import FeatureCache

    lookups = json.loads((work / "lookup_ids.json").read_text())
    import_mb = _status_mb("VmRSS")
    out: dict = {"import_mb": round(import_mb, 1)}
    t0 = time.perf_counter()
    if mode == "old":
        _, rows = _old_open(work)
        out["open_s"] = round(time.perf_counter() - t0, 3)
        found, us = _time_lookups(lambda v: (r := rows.get(v)) is not None and r["status"] == "ok", lookups)
    else:
        cache = FeatureCache(work)
        out["open_s"] = round(time.perf_counter() - t0, 3)
        found, us = _time_lookups(cache.__contains__, lookups)
        out["pickle_kb"] = round(len(pickle.dumps(cache)) / 1024, 2)
    out.update({"found": found, "lookup_us": round(us, 2), "peak_mb": round(_peak_mb(), 1),
                "rss_mb": round(_status_mb("VmRSS"), 1), **_private_mb()})
    if mode == "fork":
        readable = json.loads((work / "readable_ids.json").read_text())
        cache.features(readable[0])  # the parent holds a handle when it forks, as a DataLoader's would
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_fork_child, args=(cache, readable, lookups, q))
        p.start()
        child = q.get(timeout=600)
        p.join(60)
        if p.exitcode != 0:
            raise SystemExit(f"fork child exited with {p.exitcode}")
        out = {"parent": out, **child}
    return out


def _run_measure(mode: str, work: Path) -> dict:
    """`measure(mode)` in a fresh interpreter; adds the process's wall seconds (start + imports + all)."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", mode, "--work", str(work)],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise SystemExit(f"bench_cache: measuring {mode!r} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - t, 2)
    return result


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def report(result: dict) -> str:
    """Markdown table of one run, with the ratios new / old and the goal line."""
    rows, syn = result["rows"], result["synth"]
    lines = [f"\n### bench_cache ({syn['videos']:,} videos in {syn['shard_files']:,} shards; plan.json "
             f"{syn['plan_json_mb']} MB, Parquet indexes {syn['parquet_mb']} MB, index.arrow "
             f"{result.get('index_arrow_mb')} MB)\n",
             "| case | open s | peak RSS MB | import MB | private MB | lookup µs/id | × old s | × old MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    old = next((r for r in rows if r["case"] == "old"), None)
    for r in rows:
        xs = _ratio(r.get("open_s"), old and old["open_s"])
        xm = _ratio(r["peak_mb"], old and old["peak_mb"])
        lines.append(f"| {r['case']} | {r.get('open_s', '-')} | {r['peak_mb']} | {r.get('import_mb', '-')} "
                     f"| {r.get('private_mb', '-')} | {r['lookup_us']} | {xs if xs is not None else '-'} "
                     f"| {xm if xm is not None else '-'} |")
    goal = result["goal"]
    lines.append(f"\nnew open: {goal['open_s']} s, {goal['peak_mb']} MB peak; "
                 f"fork child {goal['fork_child_peak_mb']} MB "
                 f"peak ({goal['fork_child_private_mb']} MB private), {goal['fork_read_ms']} ms per read; "
                 f"pickled cache {goal['pickle_kb']} KB. Goal (< {GOAL_S:g} s and < {GOAL_MB:g} MB per process): "
                 f"**{'met' if goal['met'] else 'not met'}**")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="videos in the synthetic index (default 1,000,000)")
    ap.add_argument("--shards", type=int, default=31_250,
                    help="shards (Parquet files) they are split into (default 31,250)")
    ap.add_argument("--readable-shards", type=int, default=READABLE_SHARDS,
                    help=f"shards that also get an HDF5 file, read after the fork (default {READABLE_SHARDS})")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder of the synthetic cache (default benchmarks/_work/cache_<rows>_<shards>)")
    ap.add_argument("--fresh", action="store_true", help="remake the synthetic cache even if it exists")
    ap.add_argument("--skip-baseline", action="store_true", help="leave out the old reader (40-70 s, 2 GB at 1M rows)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the steady-state open; the median is reported")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--measure", choices=["old", "first", "second", "fork"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    work = args.work or HERE / "_work" / f"cache_{args.rows}_{args.shards}"
    if args.measure:  # inside a measurement process
        measured = measure(args.measure, work)
        print(json.dumps(measured))
        return measured
    if args.rows < 1 or args.shards < 1 or args.shards > args.rows or args.repeats < 1:
        ap.error("need 1 <= --shards <= --rows and --repeats >= 1")
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    from hfs.cache.format import INDEX_FILE

    synth = synthesise(work, args.rows, args.shards, args.readable_shards)
    rows = []
    if not args.skip_baseline:
        rows.append({"case": "old", **_run_measure("old", work)})
    (work / INDEX_FILE).unlink(missing_ok=True)
    rows.append({"case": "new first open", **_run_measure("first", work)})
    index_mb = round((work / INDEX_FILE).stat().st_size / 2**20, 1)
    runs = [_run_measure("second", work) for _ in range(args.repeats)]
    steady = sorted(runs, key=lambda r: r["open_s"])[len(runs) // 2]
    rows.append({"case": "new open", **steady, "open_s_runs": [r["open_s"] for r in runs]})
    fork = _run_measure("fork", work)
    rows.append({"case": "fork child", "peak_mb": fork["peak_mb"], "rss_mb": fork["rss_mb"],
                 "pss_mb": fork.get("pss_mb"), "private_mb": fork.get("private_mb"), "lookup_us": fork["lookup_us"],
                 "read_ms": fork["read_ms"], "reads": fork["reads"], "open_files": fork["open_files"],
                 "found": fork["found"], "parent": fork["parent"], "process_s": fork["process_s"]})
    old = rows[0] if rows[0]["case"] == "old" else None
    peak = max(steady["peak_mb"], fork["peak_mb"])
    goal = {"open_s": steady["open_s"], "peak_mb": steady["peak_mb"], "fork_child_peak_mb": fork["peak_mb"],
            "fork_child_private_mb": fork.get("private_mb"), "fork_read_ms": fork["read_ms"],
            "pickle_kb": steady["pickle_kb"], "met": steady["open_s"] < GOAL_S and peak < GOAL_MB}
    ratios = {f"{r['case']} / old": {"open_s": _ratio(r.get("open_s"), old["open_s"]),
                                     "peak_mb": _ratio(r["peak_mb"], old["peak_mb"])}
              for r in rows if old is not None and r is not old}
    result = {"bench": "cache_open", "synth": synth, "work": str(work), "index_arrow_mb": index_mb, "rows": rows,
              "ratios_vs_old": ratios, "goal": goal}
    print(report(result))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
