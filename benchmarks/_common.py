"""Helpers shared by the benchmark scripts (run as scripts: this folder is on sys.path)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> dict:
    """What the numbers were measured on (no torch import)."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def write_json(path: Path | None, result: dict) -> None:
    """Write `result` (plus the machine) to `path` atomically; nothing when `path` is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    tmp.replace(path)


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is running out of device memory (torch's own error, or a CUDA/cuBLAS
    allocation failure raised as a plain RuntimeError)."""
    import torch

    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text)


def write_synthetic_cache(cache: Path, videos: int, n_frames: int, frame_size: tuple[int, int], features=None,
                          encoder: str = "tiny") -> list[str]:
    """A feature cache of ``videos`` videos, written by the cache's own plan and shard writer.

    Each video's N teacher frames are JPEGs (``frame_size`` = width, height) of a smooth random
    texture scrolling sideways; its features are ``features(jpegs) -> [N, 512] float16`` (default:
    random), its timestamps spread over 60 s. Video keys are ``v{i}.mp4``; returns their ids.
    """
    import numpy as np
    import torch
    from torchvision.io import encode_jpeg

    from hfs.cache import VideoResult, plan_extraction, write_shard
    from hfs.manifests import VideoItem, make_video_id
    from hfs.pipeline.extract.config import ExtractConfig

    cfg = ExtractConfig(frames=n_frames, preset="tiny", pretrained="none")
    items = [VideoItem(make_video_id(f"v{i}.mp4"), str(cache.parent / f"v{i}.mp4"), f"v{i}.mp4") for i in range(videos)]
    plan, _ = plan_extraction(cache, items, cfg.cache_config(), shard_size=8)
    rng = np.random.default_rng(0)
    w, h = frame_size
    attrs = {**cfg.cache_config(), "teacher_frames": True, "encoder": encoder}
    for shard in plan.shards:
        results = []
        for v in shard.videos:
            base = torch.from_numpy(rng.integers(0, 256, (3, h // 8, w // 8), dtype=np.uint8))
            base = torch.nn.functional.interpolate(base[None].float(), size=(h, w), mode="bilinear")[0].byte()
            frames = [encode_jpeg(base.roll(3 * i, dims=2), quality=90).numpy().tobytes() for i in range(n_frames)]
            feats = features(frames) if features else rng.standard_normal((n_frames, 512)).astype(np.float16)
            results.append(VideoResult(
                v["video_id"], v["path"], features=feats, timestamps=np.linspace(0.5, 60.0, n_frames, dtype=np.float32),
                frames=frames, duration=60.0, fps=25.0, width=w, height=h, frames_decoded=n_frames,
                distinct_frames=n_frames,
            ))
        write_shard(cache, shard.name, results, attrs)
    return [item.video_id for item in items]
