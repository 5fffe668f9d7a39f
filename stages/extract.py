"""`hfs extract`: manifests → plan → Dask fan-out → sharded cache, then a summary.

Exit status: 0 done; 1 nothing could be extracted, shards failed (rerun to
retry them) or, with --strict, any video failed; 2 a usage error or a run
that cannot start (bad option value, unreadable manifest, encoder weights
missing, a cache made with another config), with one `error:` line.
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path
from typing import Optional, Sequence

from rich.table import Table

from hfs.stages.console import console, error

log = logging.getLogger(__name__)


class ExtractDevice(str, Enum):
    """`--device` choices: where CLIP runs (cuda: each worker process on one GPU, round-robin)."""

    cpu = "cpu"
    cuda = "cuda"


def backend_choice(value: str) -> str:
    """`--backend` check against the decoder's own list (imported only when a command runs,
    so `--help` stays instant): a usage error (exit 2) naming the choices otherwise."""
    import typer

    from hfs.pipeline.decode import BACKENDS

    if value not in BACKENDS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, BACKENDS))}.")
    return value


class UsageError(ValueError):
    """An option value that cannot be used; the message says which and why."""


def _value(option) -> str:
    return option.value if isinstance(option, Enum) else str(option)


def _optional_int(value: str, option: str) -> int | None:
    if str(value).strip().lower() in ("none", "0", "off"):
        return None
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{option} expects an integer or 'none', got {value!r}") from None
    if n < 1:
        raise UsageError(f"{option} must be >= 1, got {n}")
    return n


def _optional_seconds(value, option: str) -> float | None:
    if value is None or str(value).strip().lower() in ("none", "0", "off"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"{option} expects seconds or 'none', got {value!r}") from None
    if not seconds > 0:
        raise UsageError(f"{option} must be > 0 seconds, got {value}")
    return seconds


def build_config(frames: str = "128", size: Optional[int] = None, teacher_frame_size: str = "448",
                 model: str = "ViT-B-32", pretrained: str = "openai", preset: Optional[str] = None, device="cpu",
                 backend="auto", shard_size: int = 32, batch_size: int = 64, threads: Optional[int] = None,
                 video_timeout="600"):
    """The ExtractConfig of the command's options; UsageError for a value that cannot be used."""
    from hfs.pipeline.extract.config import ExtractConfig

    n_frames = _optional_int(frames, "--frames")
    teacher = _optional_int(teacher_frame_size, "--teacher-frame-size") if n_frames else None
    device, backend = _value(device), _value(backend)
    if preset == "tiny" and pretrained == "openai":
        pretrained = "none"  # the tiny preset has no weights; make that explicit in the metadata
    from hfs.pipeline.decode import BACKENDS

    if backend not in BACKENDS:
        raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if device not in {d.value for d in ExtractDevice}:
        raise UsageError(f"--device must be one of {', '.join(d.value for d in ExtractDevice)}, got {device!r}")
    for option, value in (("--size", size), ("--shard-size", shard_size), ("--batch-size", batch_size),
                          ("--threads", threads)):
        if value is not None and value < 1:
            raise UsageError(f"{option} must be >= 1, got {value}")
    return ExtractConfig(frames=n_frames or 128, size=size, teacher_frame_size=teacher, model=model,
                         pretrained=pretrained, preset=preset, device=device, backend=backend,
                         shard_size=shard_size, batch_size=batch_size, torch_threads=threads,
                         video_timeout=_optional_seconds(video_timeout, "--video-timeout"))


def run(manifests: Sequence[Path], out: Path, video_root: Optional[Path] = None, workers: Optional[int] = None,
        scheduler: Optional[str] = None, strict: bool = False, progress: bool = True, **options) -> int:
    """Run Stage 1 and print the summary. Returns the process exit status."""
    from hfs.cache import CacheError
    from hfs.manifests import ManifestError, read_manifests
    from hfs.pipeline.extract.encoder import EncoderError
    from hfs.pipeline.extract.run import extract

    try:
        cfg = build_config(**options)
    except UsageError as e:
        error(str(e))
        return 2
    try:
        manifest = read_manifests([str(m) for m in manifests], video_root=str(video_root) if video_root else None,
                                  strict=strict, samples=False)  # extraction needs the videos only
    except ManifestError as e:
        error(str(e))
        return 2
    if not manifest.videos:
        error(f"no readable video in {', '.join(map(str, manifests))} ({len(manifest.bad)} bad record(s))")
        return 2
    try:
        summary = extract(manifest.videos, out, cfg, workers=workers, scheduler=scheduler, progress=progress,
                          bad_manifest_lines=len(manifest.bad))
    except (CacheError, EncoderError) as e:
        error(str(e))
        return 2
    print_summary(summary, out)
    if summary.failed_shards:
        return 1
    if summary.planned and summary.ok == 0 and summary.skipped_done == 0:
        error("nothing could be extracted")
        return 1
    if strict and summary.error:
        return 1
    return 0


def print_summary(summary, out: Path) -> None:
    from hfs.cache.stats import MAX_REASONS, top_reasons

    t = Table(title=f"hfs extract → {out}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("videos planned", str(summary.planned))
    t.add_row("already done (skipped)", str(summary.skipped_done))
    t.add_row("extracted ok", f"[green]{summary.ok}[/green]")
    t.add_row("errors", f"[red]{summary.error}[/red]" if summary.error else "0")
    shown, more_kinds, more_videos = top_reasons(summary.errors_by_reason, MAX_REASONS)
    for reason, n in shown:
        t.add_row("", f"{n} × {_escape(reason)}")
    if more_kinds:
        t.add_row("", f"{more_videos} × {more_kinds} more kind(s) of error (see stats.json)")
    t.add_row("bad manifest lines", str(summary.bad_manifest_lines))
    if summary.failed_shards:
        names = summary.failed_shards
        t.add_row("failed shards (rerun)", ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else ""))
    t.add_row("frames / s", f"{summary.frames_per_s:.1f}")
    t.add_row("wall time", f"{summary.wall_s:.1f} s")
    console.print(t)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
