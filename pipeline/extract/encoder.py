"""Frozen CLIP image encoder Φ_v (Eq. 1's Φ_v(V_i)), loaded through open_clip's factory.

`load_clip("ViT-B-32", pretrained="openai")` is the paper's encoder. The
weights come from the local open_clip / Hugging Face cache only (no
download at run time); a checkpoint file path works too; random weights
must be asked for with `pretrained="none"`. `preset="tiny"` is a tiny random
ViT with the same 512-d output, for smoke runs and tests.

`check_encoder` answers "can this encoder be loaded here?" without building
it (milliseconds), so `hfs extract` can stop with one message before it
writes or submits anything; `encoder_image_size` is the input side an
architecture was made for (what `--size` defaults to).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from hfs.pipeline.extract.config import ExtractConfig

log = logging.getLogger(__name__)

TINY_MODEL = "hfs-tiny-ViT"
# Same interface and embedding width as ViT-B-32, a few hundred times smaller.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


class EncoderError(RuntimeError):
    """The encoder cannot be built as asked (missing weights, bad checkpoint)."""


def _register_tiny() -> None:
    from open_clip import factory

    factory._MODEL_CONFIGS.setdefault(TINY_MODEL, TINY_CONFIG)


def _check_cached(model: str, tag: str) -> None:
    """Fail fast, without touching the network, when a tag's weights are not cached."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise EncoderError(f"{model} has no pretrained tag {tag!r} (known: {known}); or pass a checkpoint path")
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(cfg["hf_hub"])  # open_clip: "org/model/" means the default file name
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if any(isinstance(try_to_load_from_cache(repo, n), str) for n in names):
            return
    url = cfg.get("url", "")
    if url and os.path.exists(os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))):
        return
    raise EncoderError(weights_help(model, tag))


def _resolve(model: str, pretrained: str | None, preset: str | None) -> tuple[str, str | None, bool]:
    """(architecture, tag or path or None, whether it is a path), checked as far as possible
    without building the model; EncoderError otherwise."""
    if preset == "tiny":
        _register_tiny()
        model = TINY_MODEL
    elif preset not in (None, "", "none"):
        raise EncoderError(f"unknown encoder preset {preset!r} (known: tiny)")
    tag: str | None = None if pretrained in (None, "", "none") else pretrained
    is_path = tag is not None and (os.sep in tag or tag.endswith((".bin", ".pt", ".pth", ".safetensors")))
    if is_path and not Path(tag).is_file():
        raise EncoderError(f"CLIP checkpoint {tag} does not exist")
    if tag is not None and not is_path and model == TINY_MODEL:
        raise EncoderError("--preset tiny has no pretrained tag; use --pretrained none or a checkpoint path")
    if model != TINY_MODEL and ":" not in model:  # "hf-hub:org/name" and the like carry their own config
        import open_clip

        if open_clip.get_model_config(model) is None:
            raise EncoderError(f"unknown open_clip architecture {model!r} (see open_clip.list_models())")
    if tag is not None and not is_path:
        _check_cached(model, tag)
    return model, tag, is_path


def check_encoder(model: str = "ViT-B-32", pretrained: str = "openai", preset: str | None = None) -> None:
    """Raise EncoderError (saying how to get the weights) when `load_clip` with these
    arguments could not work here: unknown preset or architecture, a checkpoint that does
    not exist, a tag whose weights are not in the local cache. Builds nothing."""
    _resolve(model, pretrained, preset)


def encoder_image_size(model: str = "ViT-B-32", preset: str | None = None) -> int | None:
    """The input side (pixels) the architecture was made for, from its open_clip config;
    None when the name carries no config open_clip knows offline ("hf-hub:...")."""
    import open_clip

    if preset == "tiny":
        _register_tiny()
        model = TINY_MODEL
    cfg = open_clip.get_model_config(model)
    if cfg is None:
        return None
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


@contextmanager
def _hub_offline():
    """Hugging Face Hub in offline mode for the duration (weights come from the cache only)."""
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def weights_help(model: str, pretrained: str) -> str:
    return (
        f"CLIP weights {model}/{pretrained} are not in the local open_clip / Hugging Face cache "
        f"(~/.cache/huggingface, or $HF_HOME). On a machine with internet run\n"
        f"  python -c \"import open_clip; open_clip.create_model('{model}', pretrained='{pretrained}')\"\n"
        f"and copy the cache here, or pass --pretrained /path/to/open_clip_model.bin "
        f"(or --pretrained none for random weights, smoke tests only)."
    )


@dataclass
class ClipEncoder:
    """A frozen open_clip model plus the preprocessing it was trained with."""

    model: Any
    preprocess: Any  # open_clip's own val transform: resize shortest side, centre crop, mean/std
    device: str
    name: str
    pretrained: str

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def preprocess_frame(self, rgb):
        """H×W×3 uint8 (or a PIL image) → 3×S×S float tensor exactly as open_clip preprocesses a PIL image."""
        from PIL import Image

        return self.preprocess(rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb))

    def encode(self, pixels) -> np.ndarray:
        """[n,3,S,S] preprocessed frames → [n, D] float16 embeddings, before normalisation."""
        import torch

        with torch.inference_mode():
            x = pixels.to(self.device, non_blocking=True)
            if self.device.startswith("cuda"):
                with torch.autocast("cuda", dtype=torch.float16):
                    emb = self.model.encode_image(x, normalize=False)
            else:
                emb = self.model.encode_image(x, normalize=False)
        return emb.float().cpu().numpy().astype(np.float16)

    @cached_property
    def tokenizer(self):
        """open_clip's tokenizer of this model (built once: ~60 ms each time, bench_select.py)."""
        import open_clip

        return open_clip.get_tokenizer(self.name)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Text embeddings [n, D] float32 (L2-normalised), for the `clip` selector."""
        import torch

        with torch.inference_mode():
            emb = self.model.encode_text(self.tokenizer(list(texts)).to(self.device), normalize=True)
        return emb.float().cpu().numpy()


def load_clip(model: str = "ViT-B-32", pretrained: str = "openai", preset: str | None = None,
              device: str = "cpu", image_size: int | None = None) -> ClipEncoder:
    """Build the frozen encoder through `open_clip.create_model_and_transforms`.

    `pretrained`: a registry tag (`openai`), a checkpoint path, or `none`.
    Tags resolve from the local cache only (HF_HUB_OFFLINE is set for the
    call); a missing file raises `EncoderError` saying how to get it.
    `image_size` other than the architecture's own (None) builds it for that
    input side (open_clip's `force_image_size`: the position embeddings of
    pretrained weights are interpolated) with the preprocessing to match.
    """
    import open_clip
    import torch

    model, tag, is_path = _resolve(model, pretrained, preset)
    force = image_size if image_size and image_size != (encoder_image_size(model) or image_size) else None
    try:
        # Random weights are seeded: every worker process must build the same encoder.
        with _hub_offline(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=tag, device=device,
                                                                       force_image_size=force)
    except Exception as e:
        if tag is not None and Path(tag).is_file():
            raise EncoderError(f"cannot load CLIP checkpoint {tag} into {model}: {str(e).splitlines()[0]}") from e
        if tag is not None:
            raise EncoderError(weights_help(model, tag) + f"\n(open_clip said: {str(e).splitlines()[0]})") from e
        raise
    net.eval().requires_grad_(False)
    if tag is None:
        log.warning("CLIP %s has RANDOM weights (pretrained=none): features are meaningless for real data", model)
    return ClipEncoder(net, preprocess, device, model, tag or "none")


# -- the encoder of a worker process ------------------------------------------------------

_ENCODERS: dict[tuple, Any] = {}
_ASSIGNED_GPU: dict[str, int] = {}  # worker address -> GPU index, set by `extract` through client.run


def worker_device(device: str) -> str:
    """`device` for this process: "cuda" becomes this Dask worker's GPU ("cuda:k", see
    `assign_gpus`), anything else is kept."""
    if device != "cuda" or not _ASSIGNED_GPU:
        return device
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        return device
    k = _ASSIGNED_GPU.get(address)
    return device if k is None else f"cuda:{k}"


def get_encoder(cfg: "ExtractConfig") -> Any:
    """The encoder of this process, loaded once per worker and reused across shards."""
    import torch

    device = worker_device(cfg.device)
    size = cfg.size or None
    key = (cfg.model, cfg.pretrained, cfg.preset, device, size)
    threads = max(1, cfg.torch_threads or 1)
    if torch.get_num_threads() != threads:  # every run's setting, also with a cached encoder
        torch.set_num_threads(threads)
    if key not in _ENCODERS:
        _ENCODERS[key] = load_clip(cfg.model, cfg.pretrained, cfg.preset, device, image_size=size)
    return _ENCODERS[key]

