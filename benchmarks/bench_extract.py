"""Stage 1 speed and memory, in four parts (each its own table; all into one JSON).

    python benchmarks/bench_extract.py [--quick] [--parts workers,resolution,isolation,plan]
        [--videos N] [--workers 1 2] [--device cpu|cuda] [--plan-records 1000000] [--json out.json]

- **workers**: videos per minute with 1 and 2 local Dask worker processes, at
  the default shard size (32 videos; `--videos` defaults to two shards' worth,
  so two workers have a shard each). Two figures per row: *steady* (the
  cluster started and every worker's encoder loaded before the clock starts,
  `extract(..., scheduler=...)` exactly as `hfs extract --scheduler` runs it)
  and *end to end* (`extract(..., workers=w)` as `hfs extract` runs it:
  cluster start, worker imports, encoder loads, extraction, index). The
  encoder is the real ViT-B-32 architecture with random weights
  (`--pretrained none`: same FLOPs as the real one, nothing to download);
  `--quick` uses the tiny preset. Videos are synthetic 320×240 clips with a
  moving texture. `--device cuda` runs CLIP on the GPU, one per worker
  round-robin. Goal: 2 workers ≥ 1.8× one. CPU seconds per video of the
  workers and their decode children tell a machine that is busy elsewhere
  (same CPU, less wall-time gain) from work that does not divide.
- **resolution**: CPU seconds per video to decode 128 frames and prepare them
  for their two uses (CLIP's input tensor, the teacher's 448-px JPEG) from
  generated 1080p and 4K clips, in this process, one FFmpeg thread. *Before*:
  frames converted to RGB at full resolution, then resized by PIL for each
  use (what `hfs extract` did); *after*: scaled in the decoder's own
  conversion to what the uses need, each use resizing once (what it does).
  CLIP's forward pass is the same either way and left out.
- **isolation**: the cost of decoding in a child process (`DecodeProcess`:
  time limit, crash isolation, decode overlapping encode) against decoding in
  the worker itself, per video, tiny CLIP; CPU seconds include the child's.
- **plan**: reading a manifest of `--plan-records` generic JSONL records
  (video, question, four options, answer) and planning it (`plan_extraction`,
  shard size 32), each step in a fresh process for its peak RSS; then
  appending 10,000 more records: seconds, and bytes of the plan written.

Raw figures go to `--json` (write a new file per run; results/ keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import write_json

WORK = Path(__file__).resolve().parent / "_work" / "extract"
PARTS = ("workers", "resolution", "isolation", "plan")
DEFAULT_SHARD_SIZE = 32


# -- videos -------------------------------------------------------------------------------

def make_videos(n: int, seconds: float) -> Path:
    from hfs.pipeline.demo.videos import write_index_video

    WORK.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        p = WORK / f"clip_{i:03d}_{int(seconds)}s.mp4"
        if not p.exists():
            write_index_video(p, int(seconds * 25), fps=25, size=(320, 240), gop=50, pattern="texture", preset="ultrafast")
        lines.append(json.dumps({"video": str(p), "id": p.stem}))
    m = WORK / f"manifest_{n}_{int(seconds)}.jsonl"
    m.write_text("\n".join(lines) + "\n")
    return m


def make_big_video(name: str, size: tuple[int, int], seconds: float = 4.0) -> Path:
    """A textured clip at `size` (25 fps, 2-s GOP), made once."""
    from hfs.pipeline.demo.videos import write_index_video

    WORK.mkdir(parents=True, exist_ok=True)
    p = WORK / f"{name}_{int(seconds)}s.mp4"
    if not p.exists():
        write_index_video(p, int(seconds * 25), fps=25, size=size, gop=50, pattern="texture", preset="ultrafast")
    return p


# -- part 1: workers -------------------------------------------------------------------------

def _warm(cfg: dict) -> str:
    """Load the encoder into this worker's cache (what a run does once per worker)."""
    from hfs.pipeline.extract.config import ExtractConfig
    from hfs.pipeline.extract.encoder import get_encoder

    return get_encoder(ExtractConfig(**cfg)).name


def _cpu_seconds() -> float:
    """CPU seconds of this worker process and everything it started (its decode child)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # ended meanwhile
            pass
    return total


def run(manifest: Path, workers: int, quick: bool, device: str = "cpu", shard_size: int = DEFAULT_SHARD_SIZE,
        end_to_end: bool = True) -> dict:
    """Extract every video with `workers` local Dask processes (1 torch thread each): steady state
    on a started, warmed cluster, then (`end_to_end`) a whole run that starts its own."""
    from distributed import Client, LocalCluster

    from hfs.manifests import read_manifest
    from hfs.pipeline.extract.config import ExtractConfig
    from hfs.pipeline.extract.run import extract

    out = WORK / f"cache_w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = ExtractConfig(pretrained="none", preset="tiny" if quick else None, shard_size=shard_size, torch_threads=1,
                        device=device)
    videos = read_manifest(manifest).videos
    load_before = os.getloadavg()[0]  # other processes' share of the machine, roughly
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"OMP_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        client.run(_warm, {**cfg.to_dict(), "size": cfg.clip_size() if hasattr(cfg, "clip_size") else cfg.size})
        startup = time.perf_counter() - t0
        cpu0 = client.run(_cpu_seconds)
        t1 = time.perf_counter()
        s = extract(videos, out, cfg, scheduler=cluster.scheduler_address, progress=False)
        wall = time.perf_counter() - t1
        cpu1 = client.run(_cpu_seconds)
        cpu = sum(cpu1[w] - cpu0.get(w, 0.0) for w in cpu1)
    if s.ok != len(videos):
        raise SystemExit(f"bench_extract: only {s.ok} of {len(videos)} videos extracted: {s.errors_by_reason}")
    row = {"workers": workers, "device": device, "videos": len(videos), "shard_size": shard_size,
           "startup_s": round(startup, 2), "wall_s": round(wall, 2), "videos_per_min": round(60 * len(videos) / wall, 2),
           "frames_per_s": round(s.frames / wall, 1), "worker_cpu_s_per_video": round(cpu / len(videos), 3),
           "worker_cores_busy": round(cpu / wall, 2), "load_1min_before": round(load_before, 2)}
    if end_to_end:
        shutil.rmtree(out, ignore_errors=True)
        t2 = time.perf_counter()
        s2 = extract(videos, out, cfg, workers=workers, progress=False)
        row["end_to_end_s"] = round(time.perf_counter() - t2, 2)
        if s2.ok != len(videos):
            raise SystemExit(f"bench_extract: end to end, only {s2.ok} of {len(videos)} videos: {s2.errors_by_reason}")
    return row


def report(rows: list[dict], title: str) -> tuple[str, float | None]:
    """(markdown table with each row's speed-up over 1 worker, 2-vs-1 speed-up or None).

    The speed-up column and the goal line need a 1-worker row; without one
    they are left out rather than computed against another baseline.
    """
    wall = {r["workers"]: r["wall_s"] for r in rows}
    speedup = wall[1] / wall[2] if {1, 2} <= wall.keys() else None
    lines = [f"\n### bench_extract ({title})\n",
             "| workers | videos | startup s | wall s | videos/min | frames/s | × 1 worker | end to end s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{wall[1] / r['wall_s']:.2f}" if 1 in wall else "-"
        lines.append(f"| {r['workers']} | {r['videos']} | {r['startup_s']} | {r['wall_s']} | {r['videos_per_min']} "
                     f"| {r['frames_per_s']} | {ratio} | {r.get('end_to_end_s', '-')} |")
    if speedup is not None:
        lines.append(f"\n2 workers / 1 worker: **{speedup:.2f}×** (goal ≥ 1.8×: {'met' if speedup >= 1.8 else 'not met'})")
    if all("worker_cores_busy" in r for r in rows):
        lines.append("Workers and their decode children, steady state: "
                     + "; ".join(f"{r['workers']} worker(s): {r['worker_cpu_s_per_video']} CPU s per video, "
                                 f"{r['worker_cores_busy']} cores busy (1-min load before: {r['load_1min_before']})"
                                 for r in rows)
                     + f"; {os.cpu_count()} cores.")
    return "\n".join(lines), speedup


# -- part 2: resolution ----------------------------------------------------------------------

def _prepare(path: Path, mode: str, encoder, frames: int = 128) -> tuple[float, float, int]:
    """(CPU s, wall s, distinct frames) to decode `frames` targets of `path` and prepare both uses."""
    from PIL import Image

    from hfs.pipeline.decode import iter_frames, probe, segment_centre_timestamps
    from hfs.pipeline.decode.child import decode_max_side
    from hfs.pipeline.extract.video import teacher_jpeg

    c0, w0 = time.process_time(), time.perf_counter()
    info = probe(path)
    ts = segment_centre_timestamps(0.0, info.duration, frames)
    n = 0
    if mode == "before":  # full-resolution RGB, PIL resizes for each use
        for item in iter_frames(path, ts, info=info, threads=1):
            encoder.preprocess_frame(item.rgb)
            teacher_jpeg(item.rgb, 448, 90)
            n += 1
    else:
        side = decode_max_side(info.width, info.height, encoder.image_size, 448)
        for item in iter_frames(path, ts, info=info, max_side=side, threads=1):
            img = Image.fromarray(item.rgb)
            encoder.preprocess_frame(img)
            teacher_jpeg(img, 448, 90)
            n += 1
    return time.process_time() - c0, time.perf_counter() - w0, n


def bench_resolution(repeats: int = 3) -> list[dict]:
    import torch

    from hfs.pipeline.extract.encoder import load_clip

    torch.set_num_threads(1)
    encoder = load_clip(preset="tiny", pretrained="none")  # the same open_clip transform as ViT-B-32's
    rows = []
    for name, size in (("1080p", (1920, 1080)), ("4k", (3840, 2160))):
        path = make_big_video(name, size)
        for mode in ("before", "after"):
            runs = [_prepare(path, mode, encoder) for _ in range(repeats)]
            cpu, wall, n = min(runs)
            rows.append({"video": name, "size": f"{size[0]}x{size[1]}", "mode": mode, "distinct_frames": n,
                         "cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "cpu_s_runs": [round(r[0], 3) for r in runs]})
    return rows


def report_resolution(rows: list[dict]) -> str:
    by = {(r["video"], r["mode"]): r for r in rows}
    lines = ["\n### decode + prepare 128 frames (CPU seconds per video, 1 FFmpeg thread, best of runs)\n",
             "| video | before: full-res RGB + PIL per use | after: scaled in the decoder | × |", "|---|---|---|---|"]
    for video in dict.fromkeys(r["video"] for r in rows):
        b, a = by[(video, "before")], by[(video, "after")]
        lines.append(f"| {video} ({b['size']}, {b['distinct_frames']} frames) | {b['cpu_s']} | {a['cpu_s']} "
                     f"| {b['cpu_s'] / a['cpu_s']:.2f} |")
    return "\n".join(lines)


# -- part 3: isolation -----------------------------------------------------------------------

def bench_isolation(manifest: Path, repeats: int = 3) -> dict:
    """Per-video wall and CPU seconds, decoding in this process vs in a (started) decode child,
    the two runs alternating; CPU seconds of the child counted with the worker's."""
    import psutil
    import torch

    from hfs.manifests import read_manifest
    from hfs.pipeline.decode.child import DecodeProcess
    from hfs.pipeline.extract.config import ExtractConfig
    from hfs.pipeline.extract.encoder import get_encoder
    from hfs.pipeline.extract.video import extract_video, extract_videos

    torch.set_num_threads(1)
    cfg = ExtractConfig(preset="tiny", pretrained="none", size=224, torch_threads=1)
    encoder = get_encoder(cfg)
    videos = [{"video_id": v.video_id, "path": v.path} for v in read_manifest(manifest).videos]
    t0 = time.perf_counter()
    decoder = DecodeProcess()
    decoder.submit({"video_id": "x", "path": "/nonexistent.mp4"}, {"frames": 4, "backend": "auto", "clip_size": 224,
                                                                    "teacher_size": None, "timeout": None})
    list(decoder.messages({}))
    child_start = time.perf_counter() - t0
    list(extract_videos(videos[:1], encoder, cfg, decoder))  # warm: the child's first decode
    child = psutil.Process(decoder.proc.pid)
    runs: dict[str, list[tuple[float, float]]] = {"in_process": [], "child": []}
    for _ in range(repeats):
        for name in runs:
            c0, w0, k0 = time.process_time(), time.perf_counter(), sum(child.cpu_times()[:2])
            if name == "in_process":
                results = [extract_video(v, encoder, cfg) for v in videos]
            else:
                results = list(extract_videos(videos, encoder, cfg, decoder))
            wall = time.perf_counter() - w0
            cpu = time.process_time() - c0 + sum(child.cpu_times()[:2]) - k0
            assert all(r.status == "ok" for r in results), [r.error for r in results if r.status != "ok"]
            runs[name].append((wall, cpu))
    decoder.close()
    out: dict = {"videos": len(videos), "child_start_s": round(child_start, 3)}
    for name, got in runs.items():
        out[name] = {"wall_s_per_video": round(min(w for w, _ in got) / len(videos), 4),
                     "cpu_s_per_video": round(min(c for _, c in got) / len(videos), 4),
                     "wall_s_runs": [round(w, 3) for w, _ in got], "cpu_s_runs": [round(c, 3) for _, c in got]}
    return out


def report_isolation(r: dict) -> str:
    a, c = r["in_process"], r["child"]
    return "\n".join([
        f"\n### decoding in a child process ({r['videos']} 10-s 320×240 videos, 128 frames, tiny CLIP, 1 thread; best of runs)\n",
        "| | wall s / video | CPU s / video (parent + child) |", "|---|---|---|",
        f"| in the worker | {a['wall_s_per_video']} | {a['cpu_s_per_video']} |",
        f"| child process | {c['wall_s_per_video']} | {c['cpu_s_per_video']} |",
        f"\nOverhead per video: {1000 * (c['cpu_s_per_video'] - a['cpu_s_per_video']):+.0f} ms CPU, "
        f"{1000 * (c['wall_s_per_video'] - a['wall_s_per_video']):+.0f} ms wall; starting a child: {r['child_start_s']} s "
        "(once per worker, and after a crash or a timeout).",
    ])


# -- part 4: plan ----------------------------------------------------------------------------

def make_records(n: int, path: Path, start: int = 0) -> Path:
    """`n` generic JSONL records: a video, an id, a question with four options and an answer."""
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"video": f"videos/part{i % 100:03d}/clip_{i:07d}.mp4", "id": f"q{i}",
                                "question": f"What happens after the person picks up object {i}?",
                                "options": ["A. walks away", "B. sits down", "C. opens the door", "D. waves"],
                                "answer": "B"}) + "\n")
    return path


def _plan_files(cache: Path) -> dict[str, tuple[int, int, int]]:
    """name -> (bytes, inode, mtime ns) of the plan's files (plan.json and anything it points to)."""
    return {p.name: (p.stat().st_size, p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(cache.glob("plan*"))} if cache.is_dir() else {}


def plan_step(step: str, manifests: list[str], cache: str) -> dict:
    """One measured step in this (fresh) process: read the manifests, then plan ("plan",
    "append") or not ("read"). Peak RSS is this process's."""
    from hfs.cache import plan_extraction
    from hfs.manifests import read_manifests

    t0 = time.perf_counter()
    m = read_manifests(manifests, samples=False)  # as `hfs extract` reads: the videos, no QA samples
    out = {"step": step, "records": len(m.videos) + len(m.bad), "videos": len(m.videos),
           "read_s": round(time.perf_counter() - t0, 2)}
    if step != "read":
        before = _plan_files(Path(cache))
        head = Path(cache, "plan-shards.jsonl").read_bytes()[:1 << 20] if before.get("plan-shards.jsonl") else b""
        t1 = time.perf_counter()
        _, new = plan_extraction(cache, m.videos, {"frames": 128, "size": 224}, DEFAULT_SHARD_SIZE)
        out["plan_s"] = round(time.perf_counter() - t1, 2)
        after = _plan_files(Path(cache))
        out["new_videos"] = new
        out["plan_files"] = {k: v[0] for k, v in after.items()}
        out["plan_bytes"] = sum(v[0] for v in after.values())
        # bytes written: whole files that were replaced (new inode) or new, plus growth of files appended to
        written = 0
        for name, (size, inode, mtime) in after.items():
            old = before.get(name)
            if old is None or old[1] != inode:
                written += size
            elif old[2] != mtime:
                written += max(0, size - old[0])
        out["bytes_written"] = written
        if head:
            out["first_mb_unchanged"] = Path(cache, "plan-shards.jsonl").read_bytes()[:len(head)] == head
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["total_s"] = round(time.perf_counter() - t0, 2)
    return out


def _in_fresh_process(step: str, manifests: list[Path], cache: Path) -> dict:
    cmd = [sys.executable, __file__, "--plan-step", step, "--plan-cache", str(cache), *map(str, manifests)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_plan(records: int) -> list[dict]:
    base = make_records(records, WORK / f"records_{records}.jsonl")
    extra = make_records(10_000, WORK / f"records_{records}_plus10k.jsonl", start=records)
    cache = WORK / f"plan_cache_{records}"
    shutil.rmtree(cache, ignore_errors=True)
    rows = [_in_fresh_process("read", [base], cache), _in_fresh_process("plan", [base], cache),
            _in_fresh_process("append", [base, extra], cache)]
    shutil.rmtree(cache, ignore_errors=True)
    return rows


def report_plan(rows: list[dict]) -> str:
    lines = ["\n### reading and planning generic JSONL records (each step a fresh process)\n",
             "| step | records | read s | plan s | total s | peak RSS MB | plan files MB | written MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        plan_mb = f"{r['plan_bytes'] / 2**20:.1f}" if "plan_bytes" in r else "-"
        written = f"{r['bytes_written'] / 2**20:.2f}" if "bytes_written" in r else "-"
        lines.append(f"| {r['step']} | {r['records']:,} | {r['read_s']} | {r.get('plan_s', '-')} | {r['total_s']} "
                     f"| {r['peak_rss_mb']} | {plan_mb} | {written} |")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------

def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny CLIP and shorter videos in the workers part")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--videos", type=int, default=None,
                    help=f"videos in the workers part (default {2 * DEFAULT_SHARD_SIZE}: two default shards)")
    ap.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE, help="shard size in the workers part")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="worker counts to measure, in this order (default 1 2; the goal compares 2 with 1)")
    ap.add_argument("--no-end-to-end", action="store_true", help="workers part: steady state only")
    ap.add_argument("--device", default="cpu", help="where CLIP runs: cpu or cuda (default cpu)")
    ap.add_argument("--plan-records", type=int, default=1_000_000, help="records in the plan part (default 1,000,000)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--plan-step", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--plan-cache", default=None, help=argparse.SUPPRESS)
    ap.add_argument("manifests", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plan_step:  # one step of the plan part, in its own process
        step = plan_step(args.plan_step, args.manifests, args.plan_cache)
        print(json.dumps(step))
        return step
    if any(w < 1 for w in args.workers):
        ap.error("--workers: every count must be at least 1")
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"--parts: unknown {', '.join(sorted(unknown))} (known: {', '.join(PARTS)})")
    result: dict = {"bench": "extract", "quick": args.quick, "device": args.device, "parts": parts}
    texts = []
    if "workers" in parts:
        n = args.videos or 2 * args.shard_size
        manifest = make_videos(n, 10 if args.quick else 30)
        rows = [run(manifest, w, args.quick, args.device, args.shard_size, not args.no_end_to_end) for w in args.workers]
        encoder = "tiny CLIP" if args.quick else "ViT-B-32, random weights"
        text, speedup = report(rows, f"{encoder} on {args.device}, {n} videos, shard size {args.shard_size}")
        texts.append(text)
        result.update(rows=rows, speedup_2_vs_1=round(speedup, 3) if speedup is not None else None)
    if "resolution" in parts:
        result["resolution"] = bench_resolution()
        texts.append(report_resolution(result["resolution"]))
    if "isolation" in parts:
        result["isolation"] = bench_isolation(make_videos(8, 10))
        texts.append(report_isolation(result["isolation"]))
    if "plan" in parts:
        result["plan"] = bench_plan(args.plan_records)
        texts.append(report_plan(result["plan"]))
    print("\n".join(texts))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
