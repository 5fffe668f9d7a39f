"""Stage 1: decode 128 frames per video, encode them with frozen CLIP, write shards.

`run_shard` is a pure function of a shard description (plain dicts, no live
objects), so Dask can run it on any worker of any cluster, video2dataset
style. `extract` checks the encoder, plans the shards, fans them out (a
`LocalCluster` of processes by default, or an existing scheduler by
address), follows per-video progress, and sums up the shards' own stats.

Decoding runs in a child process of the worker (`hfs.pipeline.decode.child`),
one video at a time, with a time limit per video; `hfs.pipeline.extract.video`
turns its frames into a `VideoResult`.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from hfs.cache import (
    CacheError,
    clean_stale_files,
    consolidate_index,
    plan_extraction,
    write_shard,
    write_stats,
)
from hfs.cache.format import PLAN_FILE
from hfs.cache.stats import shard_stats
from hfs.pipeline.extract import encoder
from hfs.pipeline.extract.config import ExtractConfig
from hfs.pipeline.extract.encoder import EncoderError, check_encoder, get_encoder, load_clip
from hfs.pipeline.extract.video import extract_videos

log = logging.getLogger(__name__)


PROGRESS_TOPIC = "hfs-extract-progress"


def _report_progress(event: dict) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(PROGRESS_TOPIC, event)
    except (ImportError, ValueError):  # not inside a Dask worker
        pass


def run_shard(shard: dict, cache_dir: str, cfg: dict, on_video: Callable[[dict], None] | None = None) -> dict:
    """Extract every video of `shard` and write its HDF5 + index. Pure function
    of its arguments; returns a small summary dict with the shard's stats."""
    config = ExtractConfig(**cfg)
    encoder = get_encoder(config)
    attrs = {**config.cache_config(), "embed_dim": encoder.embed_dim, "teacher_frames": bool(config.teacher_frame_size),
             "encoder": config.model if config.preset != "tiny" else encoder.name,
             "frame_scaling": "decoder"}  # frames shrunk in the decoder's conversion (AREA), then once per use
    results = []
    for r in extract_videos(shard["videos"], encoder, config):
        results.append(r)
        event = {"video_id": r.video_id, "status": r.status, "error": r.error, "frames": r.frames_decoded}
        (on_video or _report_progress)(event)
    write_shard(cache_dir, shard["name"], results, attrs)
    return {"shard": shard["name"], "ok": sum(r.status == "ok" for r in results), "videos": len(results),
            "stats": shard_stats(results)}


# -- GPUs ------------------------------------------------------------------------------

def assign_gpus(workers: Mapping[str, str], gpus: Mapping[str, int]) -> dict[str, int]:
    """GPU index of each worker: round-robin over the GPUs of its host, workers of a host
    taken in address order. `workers`: address -> host; `gpus`: address -> GPUs that
    worker sees. Workers that see no GPU are left out."""
    by_host: dict[str, list[str]] = {}
    for address in sorted(workers):
        by_host.setdefault(workers[address], []).append(address)
    out = {}
    for addresses in by_host.values():
        seeing = [a for a in addresses if gpus.get(a, 0) > 0]
        for rank, address in enumerate(seeing):
            out[address] = rank % gpus[address]
    return out


def _cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count()


def _set_assigned_gpus(assignment: dict[str, int]) -> None:
    encoder._ASSIGNED_GPU.clear()
    encoder._ASSIGNED_GPU.update(assignment)


def _assign_workers_to_gpus(client) -> dict[str, int]:
    """Tell every worker of `client`'s cluster which GPU is its own (see `assign_gpus`)."""
    info = client.scheduler_info()["workers"]
    hosts = {address: w.get("host") or address.rsplit(":", 1)[0] for address, w in info.items()}
    assignment = assign_gpus(hosts, client.run(_cuda_device_count))
    client.run(_set_assigned_gpus, assignment)
    log.info("GPU of each worker: %s", assignment)
    return assignment


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

    def add_shard(self, stats: Mapping[str, Any]) -> None:
        """Merge one finished shard's `shard_stats` (the run's summary never reads the index)."""
        self.ok += stats["ok"]
        self.error += stats["error"]
        self.frames += stats["frames"]
        errors = Counter(self.errors_by_reason)
        errors.update(stats["errors_by_reason"])
        self.errors_by_reason = dict(errors.most_common())

    def to_dict(self) -> dict:
        return {**asdict(self), "frames_per_s": round(self.frames_per_s, 2)}


def _make_client(workers: int, scheduler: str | None, torch_threads: int | None):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR, env={"OMP_NUM_THREADS": str(torch_threads or 1)})
    return Client(cluster), cluster


def check_encoder_here(cfg: ExtractConfig, keep: bool) -> None:
    """Load the encoder in this process, before anything is submitted: missing weights are one
    EncoderError here, not a traceback per shard on every worker. `keep` keeps it for this
    process's own use (workers=0); otherwise it is built on the CPU and dropped."""
    import torch


    if cfg.device == "cuda" and keep and not torch.cuda.is_available():
        raise EncoderError("--device cuda, but torch sees no CUDA device here")
    if keep:
        get_encoder(cfg)
        return

    encoder = load_clip(cfg.model, cfg.pretrained, cfg.preset, "cpu", image_size=cfg.size or None)
    del encoder


def _check_local_gpus() -> None:
    import torch


    if not torch.cuda.is_available():
        raise EncoderError("--device cuda, but torch sees no CUDA device on this machine (where its workers run)")


def extract(videos: Sequence[Any], cache_dir: str | Path, cfg: ExtractConfig, workers: int | None = None,
            scheduler: str | None = None, progress: bool = True, bad_manifest_lines: int = 0) -> ExtractSummary:
    """Plan, fan out and run Stage 1 for `videos` (VideoItems) into `cache_dir`.

    `workers=0` runs in this process without Dask (debugging); otherwise a
    `LocalCluster` of `workers` processes (default: cores), or the cluster at
    `scheduler`. `cfg.torch_threads` None becomes cores / workers locally, 1 on an
    external cluster, and `cfg.size` None the encoder's own input size (in a copy:
    `cfg` is not changed). `cache_dir` is made absolute: workers elsewhere write there.
    Raises EncoderError before anything is submitted when there is work and the encoder
    cannot be loaded here (before anything is written, for a new cache); a cache with
    nothing left to do needs no weights. Reruns skip finished shards.
    """

    t0 = time.perf_counter()
    cache_dir = Path(os.path.abspath(cache_dir))  # a relative path would be each worker's own
    if not (cache_dir / PLAN_FILE).exists():  # a new cache: no plan.json for a run that cannot start
        check_encoder(cfg.model, cfg.pretrained, cfg.preset)
    cfg = replace(cfg, size=cfg.clip_size())
    plan, n_new = plan_extraction(cache_dir, videos, cfg.cache_config(), cfg.shard_size)
    clean_stale_files(cache_dir)
    pending = plan.pending(cache_dir)
    planned = plan.n_videos
    todo = sum(len(s) for s in pending)
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
        inline = workers == 0 and not scheduler
        check_encoder_here(cfg, keep=inline)
        if cfg.device == "cuda" and not scheduler and not inline:
            _check_local_gpus()
        with _Progress(todo, enabled=progress) as bar:
            if inline:
                for s in pending:
                    _collect(summary, lambda: run_shard(s.to_json(), str(cache_dir), cfg.to_dict(), bar.video), s.name)
            else:
                _run_dask(pending, cache_dir, cfg, workers, scheduler, bar, summary)
    consolidate_index(cache_dir)  # index.arrow: readers (and the stats below) map one file, not every shard's
    stats = write_stats(cache_dir, {"bad_manifest_lines": bad_manifest_lines})
    summary.wall_s = time.perf_counter() - t0
    log.debug("cache stats: %s", stats)
    return summary


def _collect(summary: ExtractSummary, fn: Callable[[], dict], name: str) -> None:

    try:
        result = fn()
    except (CacheError, EncoderError):
        raise  # the same on every shard: stop the run with one message
    except Exception as e:  # the shard stays pending; a rerun retries it
        log.error("shard %s failed: %s: %s (rerun to retry)", name, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        summary.failed_shards.append(name)
        return
    summary.add_shard(result["stats"])


def _run_dask(pending, cache_dir, cfg, workers, scheduler, bar, summary) -> None:
    from distributed import as_completed

    client, cluster = _make_client(workers, scheduler, cfg.torch_threads)
    futures = {}
    try:
        try:
            client.subscribe_topic(PROGRESS_TOPIC, lambda event: bar.video(event[1]))
        except Exception:  # old distributed: fall back to per-shard progress
            bar.per_shard = True
        if cfg.device == "cuda":
            _assign_workers_to_gpus(client)
        futures = {client.submit(run_shard, s.to_json(), str(cache_dir), cfg.to_dict(), pure=False,
                                 key=f"hfs-{s.name}-{time.time_ns()}"): s for s in pending}
        for fut in as_completed(futures):
            s = futures[fut]
            _collect(summary, fut.result, s.name)
            if bar.per_shard:
                bar.advance(len(s))
    except BaseException:
        client.cancel(list(futures))
        raise
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
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

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
