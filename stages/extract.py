"""`hfs extract`: manifests → plan → Dask fan-out → sharded cache, then a summary."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from rich.table import Table

from hfs.stages.console import console, error

log = logging.getLogger(__name__)


def _optional_int(value: str, option: str) -> int | None:
    if str(value).strip().lower() in ("none", "0", "off"):
        return None
    try:
        n = int(value)
    except ValueError:
        raise SystemExit(f"error: {option} expects an integer or 'none', got {value!r}") from None
    if n < 1:
        raise SystemExit(f"error: {option} must be >= 1, got {n}")
    return n


def build_config(frames: str = "128", size: int = 224, teacher_frame_size: str = "448", model: str = "ViT-B-32",
                 pretrained: str = "openai", preset: Optional[str] = None, device: str = "cpu",
                 backend: str = "auto", shard_size: int = 32, batch_size: int = 64, threads: Optional[int] = None):
    from hfs.pipeline.extract import ExtractConfig

    n_frames = _optional_int(frames, "--frames")
    teacher = _optional_int(teacher_frame_size, "--teacher-frame-size") if n_frames else None
    if preset == "tiny" and pretrained == "openai":
        pretrained = "none"  # the tiny preset has no weights; make that explicit in the metadata
    if backend not in ("auto", "pyav", "ffmpeg"):
        raise SystemExit(f"error: --backend must be auto, pyav or ffmpeg, got {backend!r}")
    return ExtractConfig(frames=n_frames or 128, size=size, teacher_frame_size=teacher, model=model,
                         pretrained=pretrained, preset=preset, device=device, backend=backend,
                         shard_size=shard_size, batch_size=batch_size, torch_threads=threads)


def run(manifests: Sequence[Path], out: Path, video_root: Optional[Path] = None, workers: Optional[int] = None,
        scheduler: Optional[str] = None, strict: bool = False, progress: bool = True, **options) -> int:
    """Run Stage 1 and print the summary. Returns the process exit status."""
    from hfs.cache import CacheError
    from hfs.manifests import ManifestError, read_manifests
    from hfs.pipeline.encoder import EncoderError
    from hfs.pipeline.extract import extract

    cfg = build_config(**options)
    try:
        manifest = read_manifests([str(m) for m in manifests], video_root=str(video_root) if video_root else None,
                                  strict=strict)
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
    t = Table(title=f"hfs extract → {out}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("videos planned", str(summary.planned))
    t.add_row("already done (skipped)", str(summary.skipped_done))
    t.add_row("extracted ok", f"[green]{summary.ok}[/green]")
    t.add_row("errors", f"[red]{summary.error}[/red]" if summary.error else "0")
    for reason, n in summary.errors_by_reason.items():
        t.add_row("", f"{n} × {reason}")
    t.add_row("bad manifest lines", str(summary.bad_manifest_lines))
    if summary.failed_shards:
        t.add_row("failed shards (rerun)", ", ".join(summary.failed_shards))
    t.add_row("frames / s", f"{summary.frames_per_s:.1f}")
    t.add_row("wall time", f"{summary.wall_s:.1f} s")
    console.print(t)
