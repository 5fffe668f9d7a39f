"""``ExtractConfig``: everything that decides what a cache holds, plus how to run extraction."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from hfs.pipeline.extract.encoder import encoder_image_size, get_encoder

DEFAULT_VIDEO_TIMEOUT = 600.0
"""Seconds one video may take to decode (`--video-timeout`): ~100x a normal video, so
only a file that hangs the decoder reaches it."""


@dataclass
class ExtractConfig:
    """Everything that decides what a cache holds, plus how to run extraction.

    The fields named in `CACHE_KEYS` are saved in `plan.json`; rerunning
    into a cache with different values is an error.
    """

    frames: int = 128
    """Frames sampled per video, at segment centres of the clip (N in the paper)."""
    size: int | None = None
    """CLIP input side: resize shortest side to this, then centre crop (open_clip's own
    transform). None: the encoder's own input size (224 for ViT-B-32); another size builds
    the encoder for it (position embeddings interpolated)."""
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
    """Where CLIP runs: 'cpu' or 'cuda' (each worker process on one GPU, round-robin)."""
    torch_threads: int | None = None
    """Threads per worker process, for torch (intra-op) and for FFmpeg (decoding, conversion);
    None: cores / workers for a local run, 1 on an external cluster (resolved by `extract`)."""
    video_timeout: float | None = DEFAULT_VIDEO_TIMEOUT
    """Seconds one video may take to decode before it becomes an error row; None: no limit."""

    CACHE_KEYS = ("frames", "size", "teacher_frame_size", "model", "pretrained", "preset", "jpeg_quality")

    def clip_size(self) -> int:
        """`size`, or the encoder's own input side when it is None."""
        if self.size is not None:
            return int(self.size)
        native = encoder_image_size(self.model, self.preset)
        if native is None:  # a model whose config open_clip cannot read offline: ask the model
            native = get_encoder(replace(self, size=0)).image_size
        return native

    def cache_config(self) -> dict[str, Any]:
        cfg = {k: getattr(self, k) for k in self.CACHE_KEYS}
        cfg["size"] = self.clip_size()
        cfg["embed_dim"] = 512 if self.preset == "tiny" or self.model.startswith("ViT-B") else None
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}



def decode_options(cfg: ExtractConfig) -> dict[str, Any]:
    """What the decoding side needs to know of `cfg` (plain values)."""
    return {"frames": cfg.frames, "backend": cfg.backend, "clip_size": cfg.clip_size(),
            "teacher_size": cfg.teacher_frame_size, "threads": cfg.torch_threads, "timeout": cfg.video_timeout}

