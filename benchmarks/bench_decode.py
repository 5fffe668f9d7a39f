"""Decode benchmark: seconds to get 128 exact frames (segment centres) per video.

    python benchmarks/bench_decode.py [--quick] [--json out.json] [--repeats N]
        [--only 60s_default_gop,...] [--decoders hfs,torchcodec]
        [--paired torchcodec --rounds 5] [--peer-ffmpeg pyav]

Videos (720p H.264 from libx264 "superfast", or "ultrafast" with B-frames,
CABAC and deblocking put back for the 1-s GOP video: both have the decoder
features of the default preset at a fraction of its encoding time; every frame
carries its index; made once into benchmarks/_work/ and reused): a 10-minute video with the encoder's
default keyframe interval, the same with 1-second keyframes, and a 60-second
clip (`--quick`: 30 s, 30 s and 10 s). Decoders: hfs (`decode_frames`,
PyAV backend), naive sequential PyAV (decode everything, keep the frames
shown at the targets), decord and torchcodec, each configured for speed
(all threads). Missing peers are pip-installed into this interpreter; a peer
that cannot be installed or run is listed with the reason.

Each measurement runs in its own subprocess (the libraries bundle different
FFmpeg builds), after the file was read once so the page cache is warm, and
the best of `--repeats` runs is reported. Accuracy is the fraction of the 128
frames whose pixel-encoded index is the frame shown at the target time.
Goal (DESIGN.md, Stage 1): hfs at most 1.0x the fastest peer on every video.

`--paired torchcodec`: for machines whose speed drifts between runs (a
shared VM), hfs and torchcodec run in one process, interleaved target by
target (one hfs frame, then torchcodec's call for the same targets), so a
slow spell lands on both. Round 0 warms up; later rounds alternate which
decoder goes first; the file is pinned in memory (mlock) so neither pays
for reading it back. The verdict is on the median per-round ratio.

`--peer-ffmpeg pyav` runs torchcodec on the FFmpeg libraries bundled with
PyAV (the ones hfs uses) instead of the system's, so both decode with the
same FFmpeg build: a comparison of strategies, not of FFmpeg versions.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import write_json

WORK = Path(__file__).resolve().parent / "_work"
N_TARGETS = 128
FPS = 30
SIZE = (1280, 720)
DECODERS = ("hfs", "naive_pyav", "decord", "torchcodec")
PEERS = ("naive_pyav", "decord", "torchcodec")
PIP_NAMES = {"decord": "decord", "torchcodec": "torchcodec"}

# name -> (seconds, keyframe interval in frames or None for the encoder default, x264 settings)
SUPERFAST = ("superfast", None)
ULTRAFAST_B = ("ultrafast", "bframes=3:b-pyramid=normal:cabac=1:deblock=1,0,0")
"""x264 "ultrafast" with B-frames (pyramid), CABAC and deblocking put back: the
same decoder features as "superfast" at about half the encoding time."""
FULL_VIDEOS = {
    "10min_default_gop": (600, None, SUPERFAST),
    "10min_gop_1s": (600, FPS, ULTRAFAST_B),
    "60s_default_gop": (60, None, SUPERFAST),
}
QUICK_VIDEOS = {"30s_default_gop": (30, None, SUPERFAST), "30s_gop_1s": (30, FPS, SUPERFAST), "10s_default_gop": (10, None, SUPERFAST)}


# --------------------------------------------------------------------------
# Decoders (run inside a worker process)
# --------------------------------------------------------------------------


def decode_hfs(path: str, targets: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """hfs: `decode_frames` with the PyAV backend (probe + GOP-aware decode)."""
    from hfs.pipeline import decode

    stats: list[dict] = []
    close = decode._PyAVDecoder.close
    decode._PyAVDecoder.close = lambda self: (stats.append(dict(self.stats)), close(self))[1]
    result = decode.decode_frames(path, n=len(targets), backend="pyav")
    return result.frames, {"distinct": result.distinct, **(stats[0] if stats else {})}


def decode_naive_pyav(path: str, targets: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """Sequential PyAV: decode every frame, keep the last one with pts <= each target."""
    import av

    out: list[np.ndarray | None] = [None] * len(targets)
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        j, prev, prev_rgb, decoded = 0, None, None, 0
        for frame in container.decode(stream):
            decoded += 1
            t = frame.time - start
            while j < len(targets) and t > targets[j]:
                if prev_rgb is None:
                    prev_rgb = (prev or frame).to_ndarray(format="rgb24")
                out[j] = prev_rgb
                j += 1
            if j == len(targets):
                break
            prev, prev_rgb = frame, None
        while j < len(targets):
            out[j] = prev_rgb if prev_rgb is not None else prev.to_ndarray(format="rgb24")
            j += 1
    return out, {"frames": decoded}  # type: ignore[return-value]


def decode_decord(path: str, targets: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """decord: frame index from its timestamp table (last start <= t), then get_batch."""
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=0)
    starts = reader.get_frame_timestamp(np.arange(len(reader)))[:, 0]
    index = np.clip(np.searchsorted(starts - starts[0], targets, side="right") - 1, 0, len(reader) - 1)
    batch = reader.get_batch(index.tolist()).asnumpy()
    return list(batch), {"distinct": len(set(index.tolist()))}


def decode_torchcodec(path: str, targets: np.ndarray) -> tuple[list[np.ndarray], dict]:
    """torchcodec: exact seek mode, all FFmpeg threads, get_frames_played_at."""
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path, seek_mode="exact", num_ffmpeg_threads=0, dimension_order="NHWC")
    begin = decoder.metadata.begin_stream_seconds or 0.0
    batch = decoder.get_frames_played_at((targets + begin).tolist())
    return list(batch.data.numpy()), {}


def ffmpeg_in_use() -> list[str]:
    """File names of the libavcodec builds mapped into this process (which FFmpeg a decoder uses)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return []
    return sorted({line.split()[-1].rsplit("/", 1)[-1] for line in maps.read_text().splitlines() if "libavcodec" in line})


def pyav_ffmpeg_dir(folder: Path = WORK / "ffmpeg-pyav") -> Path:
    """A folder of links that gives PyAV's bundled FFmpeg libraries their plain sonames.

    On LD_LIBRARY_PATH it makes torchcodec load the FFmpeg build hfs decodes
    with (PyAV renames its bundled libraries, e.g. libavcodec-5e6b81c2.so.62.28.102).
    """
    import av

    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    if not libs.is_dir():
        raise SystemExit(f"--peer-ffmpeg pyav: no bundled FFmpeg in {libs} (PyAV built against a system FFmpeg?)")
    folder.mkdir(parents=True, exist_ok=True)
    for lib in libs.iterdir():
        links = [lib.name]  # the bundled name, which the libraries' own dependencies use
        if lib.name.startswith(("libav", "libsw")):
            stem, _, version = lib.name.partition(".so.")
            links.append(f"{stem.rsplit('-', 1)[0]}.so.{version.split('.')[0]}")  # libavcodec.so.62
        for name in links:
            link = folder / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(lib)
    return folder


def pin_in_memory(path: str) -> object | None:
    """mlock the file's pages so the kernel cannot evict them mid-run; the mapping, or None."""
    import ctypes
    import mmap

    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, prot=mmap.PROT_READ)
    view = np.frombuffer(mapping, dtype=np.uint8)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlock(ctypes.c_void_p(view.ctypes.data), ctypes.c_size_t(len(view))) != 0:
        print(f"mlock failed ({os.strerror(ctypes.get_errno())}); the file is read once instead", file=sys.stderr)
        view.sum()
        return None
    return mapping


def paired_worker(peer: str, path: str, n_frames: int, rounds: int) -> dict:
    """hfs vs `peer` (torchcodec) in one process, interleaved target by target; per-round seconds."""
    import torch  # noqa: F401  (extraction workers import it too)
    from torchcodec.decoders import VideoDecoder

    from hfs.pipeline import decode

    if peer != "torchcodec":
        raise SystemExit(f"--paired supports torchcodec only, not {peer}")
    mapping = pin_in_memory(path)
    targets = segment_targets(n_frames)
    per_round = []
    for r in range(rounds + 1):
        hfs_first = r % 2 == 0
        seconds = {"hfs": 0.0, peer: 0.0}
        got = {"hfs": {}, peer: {}}

        def timed(name, fn, *args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            seconds[name] += time.perf_counter() - t0
            return out

        def hfs_next(frames):
            item = next(frames)
            for i in item.targets:
                got["hfs"][i] = item.rgb
            return item

        def peer_frames(i_list):
            for i in i_list:
                got[peer][i] = decoder.get_frame_played_at(float(targets[i]) + begin).data.numpy()

        if hfs_first:
            frames = timed("hfs", decode.iter_frames, path, targets, "pyav")  # lazy: probe at first next()
            decoder = timed(peer, VideoDecoder, path, seek_mode="exact", num_ffmpeg_threads=0, dimension_order="NHWC")
        else:
            decoder = timed(peer, VideoDecoder, path, seek_mode="exact", num_ffmpeg_threads=0, dimension_order="NHWC")
            frames = timed("hfs", decode.iter_frames, path, targets, "pyav")
        begin = decoder.metadata.begin_stream_seconds or 0.0
        while len(got["hfs"]) < len(targets):
            if hfs_first:
                item = timed("hfs", hfs_next, frames)
                timed(peer, peer_frames, item.targets)
            else:
                first = min(set(range(len(targets))) - set(got["hfs"]))
                timed(peer, peer_frames, [first])
                item = timed("hfs", hfs_next, frames)
                timed(peer, peer_frames, [i for i in item.targets if i != first])
        frames.close()
        del decoder
        accuracy = {name: frame_accuracy([got[name][i] for i in range(len(targets))], targets, n_frames) for name in seconds}
        per_round.append({"round": r, "first": "hfs" if hfs_first else peer, "hfs_s": seconds["hfs"],
                          "peer_s": seconds[peer], "ratio": seconds["hfs"] / seconds[peer],
                          "accuracy_hfs": accuracy["hfs"], "accuracy_peer": accuracy[peer]})
        print(f"round {r} ({per_round[-1]['first']} first): hfs {seconds['hfs']:.2f} s, {peer} {seconds[peer]:.2f} s,"
              f" ratio {per_round[-1]['ratio']:.2f}", file=sys.stderr, flush=True)
    if mapping is not None:
        mapping.close()  # unmapping unlocks the pages
    return {"peer": peer, "pinned": mapping is not None, "rounds": per_round, "ffmpeg": ffmpeg_in_use()}


def paired_summary(result: dict) -> dict:
    """Median and spread of the per-round ratios, round 0 (warm-up) left out."""
    rounds = [r for r in result["rounds"] if r["round"] > 0]
    ratios = np.array([r["ratio"] for r in rounds])
    exact = all(r["accuracy_hfs"] == 1.0 and r["accuracy_peer"] == 1.0 for r in rounds)
    return {"median_ratio": float(np.median(ratios)), "min_ratio": float(ratios.min()), "max_ratio": float(ratios.max()),
            "rounds_counted": len(rounds), "exact": exact, "met": bool(np.median(ratios) <= 1.0 and exact)}


def _import_decoder(name: str) -> None:
    """Import the decoder's libraries up front so import time is not measured."""
    modules = {"hfs": ["av", "hfs.pipeline.decode"], "naive_pyav": ["av"], "decord": ["decord"], "torchcodec": ["torch", "torchcodec.decoders"]}
    for module in modules[name]:
        __import__(module)


def segment_targets(n_frames: int) -> np.ndarray:
    """The benchmark's 128 targets (segment centres, seconds) for a video of `n_frames`."""
    from hfs.pipeline.decode import segment_centre_timestamps

    return segment_centre_timestamps(0.0, n_frames / FPS, N_TARGETS)


def frame_accuracy(frames: list, targets: np.ndarray, n_frames: int) -> float:
    """Fraction of `frames` whose pixel-encoded index is the frame shown at its target time."""
    from hfs.pipeline.demo.videos import read_frame_index

    expected = np.minimum(np.floor(targets * FPS + 1e-9).astype(int), n_frames - 1)
    got = []
    for frame in frames:
        try:
            got.append(read_frame_index(np.asarray(frame)))
        except ValueError:
            got.append(-1)
    return float(np.mean(np.asarray(got) == expected))


def run_worker(decoder: str, path: str, n_frames: int) -> dict:
    """One timed measurement: seconds, CPU seconds, accuracy against the pixel index."""
    _import_decoder(decoder)
    Path(path).read_bytes()  # warm the page cache for every decoder alike
    targets = segment_targets(n_frames)
    fn = globals()[f"decode_{decoder}"]
    usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    frames, extra = fn(path, targets)
    seconds = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    # Page faults while decoding: where first-touching memory is slow (a VM), fresh
    # pages for the output frames cost time too; major faults mean evicted file pages.
    faults = {"minflt": usage1.ru_minflt - usage0.ru_minflt, "majflt": usage1.ru_majflt - usage0.ru_majflt}
    accuracy = frame_accuracy(frames, targets, n_frames)
    return {"seconds": seconds, "cpu_s": cpu, **faults, "accuracy": accuracy, "shape": list(np.asarray(frames[0]).shape),
            "ffmpeg": ffmpeg_in_use(), **extra}


# --------------------------------------------------------------------------
# Orchestration (main process)
# --------------------------------------------------------------------------


def make_videos(videos: dict) -> dict[str, dict]:
    """Write the benchmark videos into benchmarks/_work/ unless they exist; name -> facts."""
    from hfs.pipeline.demo.videos import write_index_video

    WORK.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, (seconds, gop, (preset, x264_params)) in videos.items():
        path = WORK / f"{name}.mp4"
        n_frames = seconds * FPS
        if not path.exists():
            print(f"writing {path.name} ({n_frames} frames, 720p, gop={gop or 'x264 default'}, {preset}) ...", flush=True)
            t0 = time.perf_counter()
            tmp = path.with_suffix(".part.mp4")
            write_index_video(tmp, n_frames, fps=FPS, size=SIZE, gop=gop, pattern="texture", preset=preset, x264_params=x264_params)
            tmp.rename(path)
            print(f"  {time.perf_counter() - t0:.0f} s, {path.stat().st_size / 1e6:.0f} MB", flush=True)
        made[name] = {"path": str(path), "n_frames": n_frames, "seconds": seconds, "gop": gop, "preset": preset,
                      "x264_params": x264_params, "mb": path.stat().st_size / 1e6}
    return made


def ensure_installed(decoder: str) -> str | None:
    """pip-install a missing peer into this interpreter; None when usable, else why not."""
    module = decoder
    if decoder not in PIP_NAMES or importlib.util.find_spec(module) is not None:
        return None
    print(f"installing {PIP_NAMES[decoder]} ...", flush=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", PIP_NAMES[decoder]], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        return f"pip install {PIP_NAMES[decoder]} failed: {lines[-1] if lines else proc.returncode}"
    importlib.invalidate_caches()
    return None


PEER_ENV: dict[str, str] = {}
"""Environment of torchcodec's worker processes (`--peer-ffmpeg pyav` sets LD_LIBRARY_PATH)."""


def measure(decoder: str, video: dict, timeout: float, extra_args: tuple[str, ...] = ()) -> dict:
    """Run one measurement in a subprocess; its JSON, or {"error": last stderr line}.

    With `extra_args` (a paired run) the worker's progress lines go straight to the console.
    """
    cmd = [sys.executable, __file__, "--worker", decoder, "--video", video["path"], "--n-frames", str(video["n_frames"]), *extra_args]
    env = {**os.environ, **PEER_ENV} if decoder == "torchcodec" or extra_args else None
    live = bool(extra_args)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if live else subprocess.PIPE, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or "").splitlines() if line.strip()]
        return {"error": (lines[-1] if lines else f"exit code {proc.returncode}")[:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(videos: dict, repeats: int, timeout: float, decoders: tuple[str, ...] = DECODERS) -> list[dict]:
    """Best-of-`repeats` results for every (video, decoder), decoders interleaved per repeat."""
    unavailable = {d: ensure_installed(d) for d in decoders}
    rows = []
    for name, video in videos.items():
        best: dict[str, dict] = {}
        for _ in range(repeats):
            for decoder in decoders:
                if unavailable[decoder] or "error" in best.get(decoder, {}):
                    continue
                result = measure(decoder, video, timeout)
                faults = f"({result['minflt']} minor, {result['majflt']} major page faults)" if "minflt" in result else ""
                print(f"  {name:>18} {decoder:>11}: {result.get('seconds', float('nan')):7.2f} s {faults}{result.get('error', '')}", flush=True)
                if decoder not in best or "error" in result or result["seconds"] < best[decoder]["seconds"]:
                    best[decoder] = result
        for decoder in decoders:
            result = {"error": unavailable[decoder]} if unavailable[decoder] else best[decoder]
            rows.append({"video": name, "decoder": decoder, **result})
    return rows


def add_ratios(rows: list[dict]) -> None:
    """ratio = seconds / fastest peer on the same video (any peer; `ratio_exact`: exact peers only)."""
    for video in {r["video"] for r in rows}:
        timed = [r for r in rows if r["video"] == video and "seconds" in r]
        peers = [r["seconds"] for r in timed if r["decoder"] in PEERS]
        exact_peers = [r["seconds"] for r in timed if r["decoder"] in PEERS and r["accuracy"] == 1.0]
        for r in timed:
            r["ratio"] = r["seconds"] / min(peers) if peers else None
            r["ratio_exact"] = r["seconds"] / min(exact_peers) if exact_peers else None


def goal(rows: list[dict]) -> tuple[bool | None, list[str]]:
    """(hfs exact and <= 1.0x the fastest peer on every video, the peers it was measured against).

    With `--decoders` a subset, the verdict holds only against the peers named;
    without hfs among them there is no verdict (None). An hfs run that failed is
    a failed goal.
    """
    peers = [d for d in PEERS if any(r["decoder"] == d and "seconds" in r for r in rows)]
    if not any(r["decoder"] == "hfs" for r in rows):
        return None, peers
    hfs_rows = [r for r in rows if r["decoder"] == "hfs" and "ratio" in r]
    met = bool(hfs_rows) and all(r["ratio"] is not None and r["ratio"] <= 1.0 and r["accuracy"] == 1.0 for r in hfs_rows)
    return met, peers


def table(rows: list[dict]) -> str:
    """Markdown table: video x decoder, seconds, CPU seconds, ratio to fastest peer, accuracy."""
    lines = [
        "| video | decoder | seconds | cpu s | x fastest peer | exact frames | notes |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['video']} | {r['decoder']} | - | - | - | - | skipped: {r['error']} |")
            continue
        notes = ", ".join(f"{k}={r[k]}" for k in ("frames", "seeks", "distinct", "minflt", "majflt") if k in r)
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") else "-"
        lines.append(
            f"| {r['video']} | {r['decoder']} | {r['seconds']:.2f} | {r['cpu_s']:.2f} | {ratio} | {r['accuracy'] * 100:.0f}% | {notes} |"
        )
    return "\n".join(lines)


def run_paired(videos: dict, peer: str, rounds: int, timeout: float, out: Path | None, peer_ffmpeg: str) -> None:
    """`--paired`: one interleaved process per video; print the per-round table and the verdict."""
    missing = ensure_installed(peer)
    if missing:
        raise SystemExit(f"--paired {peer}: {missing}")
    results = []
    for name, video in videos.items():
        print(f"{name}: hfs vs {peer}, interleaved, {rounds} rounds after a warm-up", flush=True)
        result = measure("hfs", video, timeout * (rounds + 1), ("--paired", peer, "--rounds", str(rounds)))
        results.append({"video": name, **result, **({} if "error" in result else paired_summary(result))})
    print()
    print(paired_table(results))
    met = bool(results) and all(r.get("met") for r in results)
    print(f"\ngoal (hfs exact and median per-round ratio <= 1.0 against {peer} on every video): {'met' if met else 'NOT met'}")
    write_json(out, {"bench": "decode_paired", "peer": peer, "peer_ffmpeg": peer_ffmpeg, "n_targets": N_TARGETS,
                     "videos": videos, "results": results, "goal_met": met})


def paired_table(results: list[dict]) -> str:
    """Markdown table of paired runs: per-round ratios and their median."""
    lines = ["| video | rounds (hfs s / peer s) | median ratio | range | exact | FFmpeg |", "|---|---|---:|---:|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['video']} | failed: {r['error']} | - | - | - | - |")
            continue
        rounds = ", ".join(f"{x['hfs_s']:.1f}/{x['peer_s']:.1f}" for x in r["rounds"] if x["round"] > 0)
        lines.append(f"| {r['video']} | {rounds} | **{r['median_ratio']:.2f}** | {r['min_ratio']:.2f}-{r['max_ratio']:.2f} |"
                     f" {'yes' if r['exact'] else 'NO'} | {', '.join(r['ffmpeg'])} |")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments; run as the orchestrator or as a one-measurement worker."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short videos (about a minute in all)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--repeats", type=int, help="runs per decoder and video; the best counts (default 2, quick 1)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per measurement")
    parser.add_argument("--only", type=lambda text: text.split(","), help="comma-separated video names of the set (e.g. 60s_default_gop)")
    parser.add_argument(
        "--decoders",
        type=lambda text: tuple(text.split(",")),
        default=DECODERS,
        help=f"comma-separated subset of {','.join(DECODERS)} (default all); ratios are to the fastest peer measured",
    )
    parser.add_argument("--paired", choices=["torchcodec"],
                        help="hfs vs this peer in one process, interleaved target by target (for drifting machines)")
    parser.add_argument("--rounds", type=int, default=5, help="--paired: rounds after the warm-up round (default 5)")
    parser.add_argument("--peer-ffmpeg", choices=["system", "pyav"], default="system",
                        help="FFmpeg for torchcodec: the system's (default) or the one bundled with PyAV, which hfs uses")
    parser.add_argument("--worker", choices=DECODERS, help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--n-frames", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.paired:
            print(json.dumps(paired_worker(args.paired, args.video, args.n_frames, args.rounds)))
        else:
            print(json.dumps(run_worker(args.worker, args.video, args.n_frames)))
        return
    if args.peer_ffmpeg == "pyav":
        PEER_ENV["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(pyav_ffmpeg_dir()), os.environ.get("LD_LIBRARY_PATH")]))
    chosen = QUICK_VIDEOS if args.quick else FULL_VIDEOS
    if args.only:
        unknown = sorted(set(args.only) - set(chosen))
        if unknown:
            parser.error(f"--only: unknown video(s) {', '.join(unknown)}; choose from {', '.join(chosen)}")
        chosen = {name: spec for name, spec in chosen.items() if name in args.only}
    unknown = sorted(set(args.decoders) - set(DECODERS))
    if unknown:
        parser.error(f"--decoders: unknown decoder(s) {', '.join(unknown)}; choose from {', '.join(DECODERS)}")
    videos = make_videos(chosen)
    if args.paired:
        run_paired(videos, args.paired, args.rounds, args.timeout, args.json, args.peer_ffmpeg)
        return
    repeats = args.repeats or (1 if args.quick else 2)
    rows = run(videos, repeats, args.timeout, args.decoders)
    add_ratios(rows)
    print()
    print(table(rows))
    met, peers = goal(rows)
    verdict = "no verdict (hfs not among --decoders)" if met is None else ("met" if met else "NOT met")
    print(f"\ngoal (hfs exact and <= 1.0x the fastest peer on every video): {verdict} against {', '.join(peers) or 'no peer'}")
    write_json(args.json, {"bench": "decode", "n_targets": N_TARGETS, "videos": videos, "results": rows,
                           "goal_met": met, "peers_measured": peers})


if __name__ == "__main__":
    main()
