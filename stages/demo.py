"""`hfs demo`: synthetic videos → `hfs extract` with the tiny CLIP, then a summary.

The later stages (train → evaluate, frame recall of uniform / clip / hfs)
join here as they land.
"""

from __future__ import annotations

from pathlib import Path

from hfs.stages.console import console


def run(out: Path, n_videos: int = 8, workers: int = 2) -> int:
    from hfs.pipeline.demo_data import make_demo_set
    from hfs.stages.extract import run as run_extract

    out = Path(out)
    console.rule("[bold]hfs demo[/bold]: synthetic videos")
    manifest = make_demo_set(out, n_videos=n_videos)
    console.print(f"{n_videos} videos and their questions in {manifest}")
    console.rule("stage 1: hfs extract (tiny random CLIP, CPU)")
    return run_extract(manifests=[manifest], out=out / "cache", preset="tiny", pretrained="none",
                       workers=workers, shard_size=max(1, n_videos // (2 * max(1, workers))), progress=True)
