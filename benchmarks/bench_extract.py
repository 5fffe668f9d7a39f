"""End-to-end Stage 1 throughput: videos per minute (decode + encode + write)
with 1 and 2 local Dask worker processes, measured in one run.

    python benchmarks/bench_extract.py [--quick] [--videos 12] [--workers 1 2]
        [--device cpu|cuda] [--json out.json]

The encoder is the real ViT-B-32 architecture with random weights
(`--pretrained none`: same FLOPs as the real one, nothing to download);
`--quick` uses the tiny preset. Videos are synthetic 320×240 clips with a
moving texture, so decoding costs something. Goal (issue 4): 2 workers ≥
1.8× one, each worker with one torch thread. Starting the cluster and loading
the encoder once per worker happen before the clock starts and are reported
as `startup s` (a fixed cost per run, about a minute here, mostly importing
torch); videos/min is the throughput of the extraction itself. `--device cuda`
runs CLIP on the GPU (every worker loads its own copy), so what scales is the
decoding, resizing and writing on the CPU side.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from _common import write_json

WORK = Path(__file__).resolve().parent / "_work" / "extract"


def make_videos(n: int, seconds: float) -> Path:
    from hfs.pipeline.synthetic import write_index_video

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


def _warm(cfg: dict) -> str:
    """Load the encoder into this worker's cache (what a run does once per worker)."""
    from hfs.pipeline.extract import ExtractConfig, get_encoder

    return get_encoder(ExtractConfig(**cfg)).name


def run(manifest: Path, workers: int, quick: bool, device: str = "cpu") -> dict:
    """Extract every video with `workers` local Dask processes (1 torch thread each).

    The cluster is started and every worker loads the encoder first (timed
    as `startup_s`); `wall_s` is the extraction itself, through
    `extract(..., scheduler=...)` exactly as `hfs extract --scheduler` runs it.
    """
    from distributed import Client, LocalCluster

    from hfs.manifests import read_manifest
    from hfs.pipeline.extract import ExtractConfig, extract

    out = WORK / f"cache_w{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = ExtractConfig(pretrained="none", preset="tiny" if quick else None, shard_size=1, torch_threads=1, device=device)
    videos = read_manifest(manifest).videos
    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"OMP_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        client.run(_warm, cfg.to_dict())
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        s = extract(videos, out, cfg, scheduler=cluster.scheduler_address, progress=False)
        wall = time.perf_counter() - t1
    if s.ok != len(videos):
        raise SystemExit(f"bench_extract: only {s.ok} of {len(videos)} videos extracted: {s.errors_by_reason}")
    return {"workers": workers, "device": device, "videos": len(videos), "startup_s": round(startup, 2), "wall_s": round(wall, 2),
            "videos_per_min": round(60 * len(videos) / wall, 2), "frames_per_s": round(s.frames / wall, 1)}


def report(rows: list[dict], title: str) -> tuple[str, float | None]:
    """(markdown table with each row's speed-up over 1 worker, 2-vs-1 speed-up or None).

    The speed-up column and the goal line need a 1-worker row; without one
    they are left out rather than computed against another baseline.
    """
    wall = {r["workers"]: r["wall_s"] for r in rows}
    speedup = wall[1] / wall[2] if {1, 2} <= wall.keys() else None
    lines = [f"\n### bench_extract ({title})\n",
             "| workers | videos | startup s | wall s | videos/min | frames/s | × 1 worker |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{wall[1] / r['wall_s']:.2f}" if 1 in wall else "-"
        lines.append(f"| {r['workers']} | {r['videos']} | {r['startup_s']} | {r['wall_s']} | {r['videos_per_min']} "
                     f"| {r['frames_per_s']} | {ratio} |")
    if speedup is not None:
        lines.append(f"\n2 workers / 1 worker: **{speedup:.2f}×** (goal ≥ 1.8×: {'met' if speedup >= 1.8 else 'not met'})")
    return "\n".join(lines), speedup


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny CLIP and fewer, shorter videos")
    ap.add_argument("--videos", type=int, default=None, help="number of videos (default 12, quick 6)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="worker counts to measure, in this order (default 1 2; the goal compares 2 with 1)")
    ap.add_argument("--device", default="cpu", help="where CLIP runs: cpu or cuda (default cpu)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    if any(w < 1 for w in args.workers):
        ap.error("--workers: every count must be at least 1")
    n = args.videos or (6 if args.quick else 12)
    manifest = make_videos(n, 10 if args.quick else 30)
    rows = [run(manifest, w, args.quick, args.device) for w in args.workers]
    encoder = "tiny CLIP" if args.quick else "ViT-B-32, random weights"
    text, speedup = report(rows, f"{encoder} on {args.device}, {n} videos")
    print(text)
    result = {"bench": "extract", "quick": args.quick, "device": args.device, "rows": rows,
              "speedup_2_vs_1": round(speedup, 3) if speedup is not None else None}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
