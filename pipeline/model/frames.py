"""Teacher frames as tensors: JPEG decoding and the image ops the teachers share (Sec. 3.4, Eq. 16).

The cache stores each video's N frames as JPEGs (longest side 448, aspect kept,
one size per video). Which of them the teacher needs is known only inside the
training step, after the selection S of Eq. 10, so the step decodes just those
k JPEGs on its own device (`decode_jpegs`, nvJPEG on CUDA) and each teacher
turns the uint8 frames into its model inputs with the tensor ops below. No PIL
and no HF processor call runs in the step.

The ops reproduce transformers' torchvision image-processor backend (what
`AutoProcessor` loads when torchvision is installed), so on the CPU the pixel
values equal the HF processor's: `tvF.resize` on the uint8 frames with the
processor's interpolation and antialias on, then rescale and normalise fused
into one float32 `(x - mean/r) / (std/r)` with r the rescale factor (1/255).

uint8 resize off the CPU: torch has native uint8 bicubic / bilinear antialiased
kernels on the CPU only (Pillow's algorithm: separable, width pass first, the
intermediate stored as uint8, fixed-point weights). Elsewhere (CUDA)
`resize_frames` runs the same two passes in float32, clamping to [0, 255] and
rounding to uint8 levels after each, so the numbers follow the uint8 path.
torchvision's own CUDA fallback (one 2-D float resize, rounded once) keeps the
bicubic overshoot of the first pass and differs from the CPU values by up to
~20 grey levels at sharp edges; the two passes stay within 2 levels (the
CPU kernel's fixed-point weights; measured on noise frames, under 10 % of
pixels differ, nearly all by one level), i.e. at most 2/255/std ≈ 0.03 after
CLIP normalisation. tests/pipeline/model/test_frames.py measures this on the CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

JpegData = bytes | bytearray | memoryview | np.ndarray | Tensor
"""One encoded JPEG: raw bytes, a uint8 numpy array or a uint8 torch tensor (1-D, on any device)."""

PIL_RESAMPLE_NAMES = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}
"""PIL resampling filter codes as image-processor configs store them ("resample": 3 = bicubic)."""


class FrameDecodeError(ValueError):
    """A teacher frame could not be decoded (corrupt or empty JPEG, mixed sizes)."""


def _byte_tensor(data: JpegData, index: int) -> Tensor:
    """One JPEG as the 1-D uint8 CPU tensor `torchvision.io.decode_jpeg` takes."""
    if isinstance(data, Tensor):
        if data.dtype != torch.uint8:
            raise FrameDecodeError(f"frame {index}: JPEG tensor must be uint8, got {data.dtype}")
        tensor = data.detach().reshape(-1).cpu()
    elif isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise FrameDecodeError(f"frame {index}: JPEG array must be uint8, got {data.dtype}")
        # torch.from_numpy warns on read-only arrays (h5py, np.frombuffer); a copy is ~20 KB
        tensor = torch.from_numpy(np.array(data, dtype=np.uint8, copy=True).reshape(-1))
    elif isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) == 0:
            raise FrameDecodeError(f"frame {index}: empty JPEG (0 bytes)")
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    else:
        kind = type(data).__name__
        raise FrameDecodeError(f"frame {index}: expected JPEG bytes, a uint8 array or tensor, got {kind}")
    if tensor.numel() == 0:
        raise FrameDecodeError(f"frame {index}: empty JPEG (0 bytes)")
    return tensor


def _reason(err: Exception) -> str:
    """torchvision's error text without its C++ source location prefix."""
    return re.sub(r"^.*\.(?:cpp|cu|h):\d+,\s*", "", str(err)).strip() or type(err).__name__


def _decode_one(tensor: Tensor, index: int) -> Tensor:
    """Decode one JPEG on the CPU; a corrupt one raises FrameDecodeError naming frame `index`."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(tensor, mode=ImageReadMode.RGB)
    except RuntimeError as err:
        raise FrameDecodeError(f"frame {index}: corrupt JPEG ({tensor.numel()} bytes): {_reason(err)}") from err


def decode_jpegs(jpegs: Sequence[JpegData], device: str | torch.device = "cpu") -> Tensor:
    """Decode the k selected JPEG frames of one video -> uint8 [k, 3, H, W] RGB on `device`.

    jpegs: encoded frames in the order wanted (time order for the teacher).
    device: where the frames are decoded and returned; CUDA decodes the whole list in one
        nvJPEG call.

    Frames of one video share one size (the cache writes them so), and the teacher takes
    one [k, 3, H, W] tensor per sample, so frames of different sizes raise
    FrameDecodeError naming them rather than returning a ragged list. A corrupt or empty
    JPEG raises FrameDecodeError naming its position in `jpegs`.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    if len(jpegs) == 0:
        raise FrameDecodeError("no JPEG frames to decode")
    device = torch.device(device)
    data = [_byte_tensor(j, i) for i, j in enumerate(jpegs)]
    if device.type == "cpu":
        frames = [_decode_one(t, i) for i, t in enumerate(data)]
    else:
        try:
            frames = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as err:
            # the batched GPU decode reports no frame: find the culprit on the CPU
            for i, t in enumerate(data):
                _decode_one(t, i)
            raise FrameDecodeError(f"decoding {len(data)} JPEG frames on {device} failed: {_reason(err)}") from err
    sizes = [tuple(f.shape[-2:]) for f in frames]
    if len(set(sizes)) > 1:
        odd = next(i for i, s in enumerate(sizes) if s != sizes[0])
        (h0, w0), (h, w) = sizes[0], sizes[odd]
        raise FrameDecodeError(
            f"frames of one video must share one size: frame 0 is {w0}x{h0}, frame {odd} is {w}x{h} (width x height)"
        )
    return torch.stack(frames)


def check_frames(frames, what: str = "frames") -> None:
    """Raise ValueError unless `frames` is a uint8 tensor [k, 3, H, W] (RGB, 0..255) with k >= 1."""
    if not isinstance(frames, Tensor):
        raise ValueError(
            f"{what} must be a uint8 tensor [k, 3, H, W] (e.g. from hfs.pipeline.model.frames.decode_jpegs), "
            f"got {type(frames).__name__}"
        )
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"{what} must be a uint8 tensor [k, 3, H, W] (RGB), got {frames.dtype} {list(frames.shape)}")


def size_field(size, name: str):
    """A field of an image processor's `size` ("height", "shortest_edge", …): a SizeDict when
    loaded, a plain dict in some saved configs; None when absent."""
    return size.get(name) if isinstance(size, dict) else getattr(size, name, None)


def interpolation_mode(resample):
    """torchvision InterpolationMode of an image-processor `resample` (PIL code, enum or mode).

    Same mapping as transformers' `pil_torch_interpolation_mapping` (PIL NEAREST is NEAREST_EXACT);
    None means bilinear, the torchvision backend's default.
    """
    from torchvision.transforms.v2 import InterpolationMode

    if resample is None:
        return InterpolationMode.BILINEAR
    if isinstance(resample, InterpolationMode):
        return resample
    if isinstance(resample, str):
        return InterpolationMode(resample.lower())
    name = PIL_RESAMPLE_NAMES.get(int(resample))
    if name is None:
        raise ValueError(f"unknown resample code {resample!r} in the image processor config")
    if name == "NEAREST":
        return InterpolationMode.NEAREST_EXACT
    return InterpolationMode[name]


def resize_frames(frames: Tensor, height: int, width: int, resample) -> Tensor:
    """Antialiased resize of uint8 frames [..., 3, H, W] -> uint8 [..., 3, height, width] on their device.

    CPU: `tvF.resize` on uint8, as the HF torchvision backend calls it. Elsewhere: the same
    separable passes in float32, each clamped and rounded to uint8 levels (`_resize_in_float`),
    within 2 grey levels of the CPU values (module docstring). Lanczos falls back to bicubic
    off the CPU, as transformers does.
    """
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as tvF

    mode = interpolation_mode(resample)
    if tuple(frames.shape[-2:]) == (height, width):
        return frames
    if mode in (InterpolationMode.BOX, InterpolationMode.HAMMING):
        raise ValueError(f"resample {mode.name} has no tensor resize; use bicubic, bilinear, Lanczos or nearest")
    if frames.device.type == "cpu" or mode in (InterpolationMode.NEAREST, InterpolationMode.NEAREST_EXACT):
        return tvF.resize(frames, [height, width], interpolation=mode, antialias=True)
    if mode == InterpolationMode.LANCZOS:
        mode = InterpolationMode.BICUBIC
    return _resize_in_float(frames, height, width, mode)


def _resize_in_float(frames: Tensor, height: int, width: int, mode) -> Tensor:
    """The CPU uint8 resize done in float32 where no uint8 kernel exists (CUDA): two 1-D passes,
    width then height, each clamped to [0, 255] and rounded half up to uint8 levels.

    The CPU kernel (Pillow's algorithm) is separable and stores the width pass in uint8, so
    bicubic overshoot is clipped between the passes; one 2-D float resize would keep it and
    differ by up to ~20 levels at sharp edges, where these two passes stay within 2 levels
    (its fixed-point weights). A pass over an unchanged side would be the identity; it is skipped.
    """
    from torchvision.transforms.v2 import functional as tvF

    pixels = frames.float()
    old_height, old_width = pixels.shape[-2:]
    for size, changed in (([old_height, width], width != old_width), ([height, width], height != old_height)):
        if changed:
            pixels = tvF.resize(pixels, size, interpolation=mode, antialias=True)
            pixels = pixels.clamp_(0, 255).add_(0.5).floor_()
    return pixels.to(torch.uint8)


@lru_cache(maxsize=32)
def _fused_mean_std(mean: tuple, std: tuple, rescale_factor: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """mean/r and std/r as float32 tensors on `device`, built the way the HF backend builds them."""
    scale = 1.0 / rescale_factor
    return (
        torch.tensor(mean, dtype=torch.float32, device=device) * scale,
        torch.tensor(std, dtype=torch.float32, device=device) * scale,
    )


def rescale_and_normalize(
    frames: Tensor, do_rescale: bool, rescale_factor: float, do_normalize: bool, mean, std
) -> Tensor:
    """uint8 frames [..., 3, H, W] -> float32 model pixels: (x·r - mean) / std, fused as the
    HF torchvision backend fuses it, (x - mean/r) / (std/r), with r = rescale_factor."""
    from torchvision.transforms.v2 import functional as tvF

    if do_normalize:
        if do_rescale:
            mean, std = _fused_mean_std(tuple(mean), tuple(std), float(rescale_factor), frames.device)
        else:
            mean, std = _fused_mean_std(tuple(mean), tuple(std), 1.0, frames.device)
        # in place only on the float copy of integer frames, never on the caller's tensor
        return tvF.normalize(frames.to(torch.float32), mean, std, inplace=frames.dtype != torch.float32)
    if do_rescale:
        return frames * rescale_factor
    return frames.to(torch.float32)
