"""Stage 1: decode 128 frames per video, encode them with frozen CLIP, write shards.

`run_shard` is a pure function of a shard description (plain dicts, no live
objects), so Dask can run it on any worker of any cluster, video2dataset
style. `extract` plans the shards, fans them out (a `LocalCluster` of
processes by default, or an existing scheduler by address), follows
per-video progress, and sums up.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hfs.cache import (
    CacheError,
    VideoResult,
    clean_stale_files,
    consolidate_index,
    plan_extraction,
    read_index,
    write_shard,
    write_stats,
)
from hfs.cache.stats import error_kind

log = logging.getLogger(__name__)

PROGRESS_TOPIC = "hfs-extract-progress"


@dataclass
class ExtractConfig:
    """Everything that decides what a cache holds, plus how to run extraction.

    The fields named in `CACHE_KEYS` are saved in `plan.json`; rerunning
    into a cache with different values is an error.
    """

    frames: int = 128
    """Frames sampled per video, at segment centres of the clip (N in the paper)."""
    size: int = 224
    """CLIP input side: resize shortest side to this, then centre crop (open_clip's own transform)."""
    teacher_frame_size: int | None = 448
    """Longest side of the JPEG frames kept for the teacher (never upscaled); None: keep no frames."""
    model: str = "ViT-B-32"
    """open_clip architecture name."""
    pretrained: str = "openai"
    """open_clip tag (from the local cache), a checkpoint path, or 'none' (random weights)."""
    preset: str | None = None
    """'tiny': a tiny random CLIP with the same output layout, for smoke runs and tests."""
    jpeg_quality: int = 90
    """Quality of the teacher JPEGs."""
    shard_size: int = 32
    """Videos per shard (one Dask task; a crash loses at most the shards in flight)."""
    batch_size: int = 64
    """Frames per CLIP forward."""
    backend: str = "auto"
    """Decoder: 'auto' (PyAV, falling back to the ffmpeg binary), 'pyav' or 'ffmpeg'."""
    device: str = "cpu"
    """Where CLIP runs: 'cpu' or 'cuda'."""
    torch_threads: int | None = None
    """torch intra-op threads per worker process; None: cores / workers for a local
    run, 1 on an external cluster (resolved by `extract`)."""

    CACHE_KEYS = ("frames", "size", "teacher_frame_size", "model", "pretrained", "preset", "jpeg_quality")

    def cache_config(self) -> dict[str, Any]:
        cfg = {k: getattr(self, k) for k in self.CACHE_KEYS}
        cfg["embed_dim"] = 512 if self.preset == "tiny" or self.model.startswith("ViT-B") else None
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# -- one video ------------------------------------------------------------------

def teacher_jpeg(rgb: np.ndarray, longest: int, quality: int) -> bytes:
    """The whole frame for the teacher: aspect kept, longest side `longest`, never upscaled."""
    from PIL import Image

    img = Image.fromarray(rgb)
    scale = longest / max(img.size)
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def extract_video(video: dict, encoder: Any, cfg: ExtractConfig) -> VideoResult:
    """Decode, preprocess and encode one clip. Never raises for a bad video:
    a problem becomes an error row with a one-line reason."""
    import torch

    from hfs.pipeline.decode import DecodeError, iter_frames, probe, segment_centre_timestamps

    path = video["path"]
    t0 = time.perf_counter()
    try:
        info = probe(path)  # DecodeError for missing, empty, unreadable files
        start = float(video.get("start") or 0.0)
        end = float(video["end"]) if video.get("end") is not None else info.duration
        end = min(end, info.duration) if info.duration and info.duration > 0 else end
        if not end or end <= start:
            return VideoResult.failed(
                video, f"window start {start:.2f}s is not before the end of the video ({info.duration or 0:.2f}s)")
        ts = segment_centre_timestamps(start, end, cfg.frames)
        pixels = torch.empty(cfg.frames, 3, cfg.size, cfg.size)
        filled = np.zeros(cfg.frames, dtype=bool)
        jpegs: list[bytes | None] = [None] * cfg.frames
        distinct, decoder = 0, ""
        truncated = 0
        for item in iter_frames(path, ts, backend=cfg.backend, info=info):
            decoder = item.backend or decoder
            distinct += 1
            truncated += len(item.truncated)
            x = encoder.preprocess_frame(item.rgb)
            jpg = teacher_jpeg(item.rgb, cfg.teacher_frame_size, cfg.jpeg_quality) if cfg.teacher_frame_size else None
            for j in item.targets:
                pixels[j] = x
                jpegs[j] = jpg
                filled[j] = True
        decode_s = time.perf_counter() - t0
        if not filled.any():
            return VideoResult.failed(video, "no frame could be decoded", decode_s=decode_s)
        decoded = int(filled.sum()) - truncated
        if not filled.all():  # e.g. truncated file: later targets take the nearest decoded frame
            have = np.flatnonzero(filled)
            for j in np.flatnonzero(~filled):
                k = have[np.argmin(np.abs(have - j))]
                pixels[j], jpegs[j] = pixels[k], jpegs[k]
        t1 = time.perf_counter()
        feats = np.concatenate([encoder.encode(pixels[i : i + cfg.batch_size])
                                for i in range(0, cfg.frames, cfg.batch_size)])
        encode_s = time.perf_counter() - t1
        return VideoResult(
            video["video_id"], path, video.get("start"), video.get("end"), features=feats,
            timestamps=ts.astype(np.float32), frames=jpegs if cfg.teacher_frame_size else None,
            duration=float(end - start), fps=float(info.fps or 0.0), width=int(info.width),
            height=int(info.height), frames_decoded=decoded, distinct_frames=distinct,
            decoder=decoder, decode_s=decode_s, encode_s=encode_s,
        )
    except DecodeError as e:
        return VideoResult.failed(video, str(e), decode_s=time.perf_counter() - t0)
    except Exception as e:  # a bug or an exotic file must not kill the shard
        log.exception("unexpected error on %s", path)
        return VideoResult.failed(video, f"{type(e).__name__}: {e}", decode_s=time.perf_counter() - t0)


# -- one shard (the Dask task) -------------------------------------------------------

_ENCODERS: dict[tuple, Any] = {}


def get_encoder(cfg: ExtractConfig) -> Any:
    """The encoder of this process, loaded once per worker and reused across shards."""
    import torch

    key = (cfg.model, cfg.pretrained, cfg.preset, cfg.device)
    threads = max(1, cfg.torch_threads or 1)
    if torch.get_num_threads() != threads:  # every run's setting, also with a cached encoder
        torch.set_num_threads(threads)
    if key not in _ENCODERS:
        from hfs.pipeline.encoder import load_clip

        _ENCODERS[key] = load_clip(cfg.model, cfg.pretrained, cfg.preset, cfg.device)
    return _ENCODERS[key]


def _report_progress(event: dict) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(PROGRESS_TOPIC, event)
    except (ImportError, ValueError):  # not inside a Dask worker
        pass


def run_shard(shard: dict, cache_dir: str, cfg: dict, on_video: Callable[[dict], None] | None = None) -> dict:
    """Extract every video of `shard` and write its HDF5 + index. Pure function
    of its arguments; returns a small summary dict."""
    config = ExtractConfig(**cfg)
    encoder = get_encoder(config)
    attrs = {**config.cache_config(), "embed_dim": encoder.embed_dim, "teacher_frames": bool(config.teacher_frame_size),
             "encoder": config.model if config.preset != "tiny" else encoder.name}
    results = []
    for video in shard["videos"]:
        r = extract_video(video, encoder, config)
        results.append(r)
        event = {"video_id": r.video_id, "status": r.status, "error": r.error, "frames": r.frames_decoded}
        (on_video or _report_progress)(event)
    write_shard(cache_dir, shard["name"], results, attrs)
    return {"shard": shard["name"], "ok": sum(r.status == "ok" for r in results), "videos": len(results)}


# -- the whole run --------------------------------------------------------------------

@dataclass
class ExtractSummary:
    planned: int = 0
    new_videos: int = 0
    skipped_done: int = 0  # videos in shards finished by an earlier run
    ok: int = 0
    error: int = 0
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    bad_manifest_lines: int = 0
    failed_shards: list[str] = field(default_factory=list)
    frames: int = 0
    wall_s: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "frames_per_s": round(self.frames_per_s, 2)}


def _make_client(workers: int, scheduler: str | None, torch_threads: int | None):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR, env={"OMP_NUM_THREADS": str(torch_threads or 1)})
    return Client(cluster), cluster


def extract(videos: Sequence[Any], cache_dir: str | Path, cfg: ExtractConfig, workers: int | None = None,
            scheduler: str | None = None, progress: bool = True, bad_manifest_lines: int = 0) -> ExtractSummary:
    """Plan, fan out and run Stage 1 for `videos` (VideoItems) into `cache_dir`.

    `workers=0` runs in this process without Dask (debugging); otherwise a
    `LocalCluster` of `workers` processes (default: cores), or the cluster at
    `scheduler`. `cfg.torch_threads` None becomes cores / workers locally, 1 on an
    external cluster (in a copy: `cfg` is not changed). Reruns skip finished shards.
    """
    t0 = time.perf_counter()
    cache_dir = Path(cache_dir)
    plan, n_new = plan_extraction(cache_dir, videos, cfg.cache_config(), cfg.shard_size)
    clean_stale_files(cache_dir)
    pending = plan.pending(cache_dir)
    planned = sum(len(s.videos) for s in plan.shards)
    todo = sum(len(s.videos) for s in pending)
    summary = ExtractSummary(planned=planned, new_videos=n_new, skipped_done=planned - todo,
                             bad_manifest_lines=bad_manifest_lines)
    if workers is None:
        workers = os.cpu_count() or 1
    if pending:
        log.info("%d video(s) in %d shard(s) to extract, %d already done", todo, len(pending), planned - todo)
        workers = max(0, min(workers, len(pending)))
        if cfg.torch_threads is None:
            local = max(1, (os.cpu_count() or 1) // max(1, workers))
            cfg = replace(cfg, torch_threads=1 if scheduler else local)
        with _Progress(todo, enabled=progress) as bar:
            if workers == 0 and not scheduler:
                for s in pending:
                    _collect(summary, lambda: run_shard(s.to_json(), str(cache_dir), cfg.to_dict(), bar.video), s.name)
            else:
                _run_dask(pending, cache_dir, cfg, workers, scheduler, bar, summary)
    consolidate_index(cache_dir)  # index.arrow: readers (and the stats below) map one file, not every shard's
    stats = write_stats(cache_dir, {"bad_manifest_lines": bad_manifest_lines})
    run_rows = {v["video_id"] for s in pending for v in s.videos}
    index = [r for r in read_index(cache_dir).to_pylist() if r["video_id"] in run_rows]
    summary.ok = sum(r["status"] == "ok" for r in index)
    summary.error = len(index) - summary.ok
    summary.errors_by_reason = dict(Counter(error_kind(r["error"]) for r in index if r["status"] != "ok").most_common())
    summary.frames = sum(r["frames_decoded"] for r in index if r["status"] == "ok")
    summary.wall_s = time.perf_counter() - t0
    log.debug("cache stats: %s", stats)
    return summary


def _collect(summary: ExtractSummary, fn: Callable[[], dict], name: str) -> None:
    try:
        fn()
    except CacheError:
        raise
    except Exception as e:  # the shard stays pending; a rerun retries it
        log.error("shard %s failed: %s: %s (rerun to retry)", name, type(e).__name__, e)
        summary.failed_shards.append(name)


def _run_dask(pending, cache_dir, cfg, workers, scheduler, bar, summary) -> None:
    from distributed import as_completed

    client, cluster = _make_client(workers, scheduler, cfg.torch_threads)
    try:
        try:
            client.subscribe_topic(PROGRESS_TOPIC, lambda event: bar.video(event[1]))
        except Exception:  # old distributed: fall back to per-shard progress
            bar.per_shard = True
        futures = {client.submit(run_shard, s.to_json(), str(cache_dir), cfg.to_dict(), pure=False,
                                 key=f"hfs-{s.name}-{time.time_ns()}"): s for s in pending}
        for fut in as_completed(futures):
            s = futures[fut]
            _collect(summary, fut.result, s.name)
            if bar.per_shard:
                bar.advance(len(s.videos))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class _Progress:
    """A rich progress bar over videos (rate and ETA); silent when disabled."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.enabled, self.per_shard = total, enabled, False
        self.errors = 0
        self._bar = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)

            self._bar = Progress(TextColumn("[bold]extract"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]:.2f} videos/s"), TextColumn("errors {task.fields[errors]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("extract", total=self.total, rate=0.0, errors=0)
            self._t0 = time.perf_counter()
        return self

    def video(self, event: dict) -> None:
        self.errors += event.get("status") == "error"
        self.advance(1)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            done = self._bar.tasks[0].completed + n
            rate = done / max(1e-9, time.perf_counter() - self._t0)
            self._bar.update(self._task, advance=n, rate=rate, errors=self.errors)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
