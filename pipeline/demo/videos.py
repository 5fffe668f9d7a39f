"""Synthetic videos for tests, benchmarks and the demo.

Two kinds of video:

* **Index videos** (`write_index_video`): every frame carries its own frame
  index as a 4×4 grid of large black/white cells (16 bits) inside a black and
  a white sync ring, drawn in the frame's central square. The code survives
  lossy codecs, JPEG, scaling and a centre crop, so `read_frame_index` can tell
  which frame a decoder returned — the ground truth for exact decoding.
* **Scene videos** (`write_scene_video`): runs of frames showing colours or
  simple shapes chosen by the caller (the demo's "answer lives in a few
  frames" videos).

Both are written with PyAV; the container follows the file suffix (`.mp4`,
`.mkv`, `.ts`, ...). Small videos (160×120, a few hundred frames) take well
under a second.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, Union

import numpy as np

log = logging.getLogger(__name__)

INDEX_BITS = 16
"""Bits in the frame-index code: indices 0 .. 2**16 - 1."""

_GRID = 4  # data cells per side (4×4 = INDEX_BITS)
_UNITS = _GRID + 4  # code square in units: black ring, white ring, data, white, black
_BLACK, _WHITE = 0, 255

RGB = tuple[int, int, int]
FrameFill = Union[RGB, Callable[[int, int, int], np.ndarray]]
"""A scene's look: an RGB colour, or `f(i, height, width) -> (H, W, 3) uint8`
called with the frame's index `i` inside the scene."""


# --------------------------------------------------------------------------
# The frame-index code
# --------------------------------------------------------------------------


def _code_square(height: int, width: int) -> tuple[int, int, float]:
    """Top, left and unit size (pixels) of the code in a `height`×`width` frame.

    The code fills the central square of side `min(height, width)`, so it
    survives resizing with the aspect kept and a centre crop to a square.
    """
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side / _UNITS


def _unit_box(top: int, left: int, unit: float, r0: int, c0: int, r1: int, c1: int) -> tuple[slice, slice]:
    """Pixel slices covering code units [r0, r1) × [c0, c1)."""
    return (
        slice(top + round(r0 * unit), top + round(r1 * unit)),
        slice(left + round(c0 * unit), left + round(c1 * unit)),
    )


def draw_frame_index(frame: np.ndarray, index: int) -> np.ndarray:
    """Draw the code of `index` into `frame` (H×W×3 uint8, modified in place).

    Layout in code units (the central square is 8×8 units): ring 0 black,
    ring 1 white, the 4×4 data cells inside (bit 15 top-left, row-major,
    white = 1). Returns `frame`.
    """
    if not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"frame index {index} does not fit in {INDEX_BITS} bits")
    height, width = frame.shape[:2]
    top, left, unit = _code_square(height, width)
    frame[_unit_box(top, left, unit, 0, 0, _UNITS, _UNITS)] = _BLACK
    frame[_unit_box(top, left, unit, 1, 1, _UNITS - 1, _UNITS - 1)] = _WHITE
    for bit in range(INDEX_BITS):
        if not (index >> (INDEX_BITS - 1 - bit)) & 1:
            r, c = divmod(bit, _GRID)
            frame[_unit_box(top, left, unit, 2 + r, 2 + c, 3 + r, 3 + c)] = _BLACK
    return frame


def _unit_mean(gray: np.ndarray, top: int, left: int, unit: float, r: int, c: int) -> float:
    """Mean of the central half of code unit (r, c): cell edges blur under compression."""
    y0, x0 = top + (r + 0.25) * unit, left + (c + 0.25) * unit
    y1, x1 = top + (r + 0.75) * unit, left + (c + 0.75) * unit
    patch = gray[int(round(y0)) : max(int(round(y1)), int(round(y0)) + 1), int(round(x0)) : max(int(round(x1)), int(round(x0)) + 1)]
    return float(patch.mean())


def read_frame_index(rgb: np.ndarray) -> int:
    """Read back the index drawn by `draw_frame_index` from an H×W×3 image.

    Robust to lossy codecs, JPEG, resizing with the aspect kept (e.g. shortest
    side to 224) and a centre crop. The threshold is the midpoint of the black
    and white sync rings; raises `ValueError` when they are not there.
    """
    image = np.asarray(rgb)
    top, left, unit = _code_square(*image.shape[:2])
    side = min(image.shape[:2])
    gray = image[top : top + side, left : left + side].astype(np.float32)  # the code square only
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    top = left = 0
    if unit < 2:
        raise ValueError(f"image {image.shape[1]}x{image.shape[0]} is too small to hold a frame index")
    black = np.mean([_unit_mean(gray, top, left, unit, 0, c) for c in range(_UNITS)])
    white = np.mean([_unit_mean(gray, top, left, unit, 1, c) for c in range(1, _UNITS - 1)])
    if white - black < 64:
        raise ValueError(f"no frame index pattern (sync contrast {white - black:.0f} < 64)")
    threshold = (black + white) / 2
    index = 0
    for bit in range(INDEX_BITS):
        r, c = divmod(bit, _GRID)
        index = (index << 1) | int(_unit_mean(gray, top, left, unit, 2 + r, 2 + c) > threshold)
    return index


# --------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------


class _MovingTexture:
    """A smooth random texture panned a few pixels per frame.

    Gives the encoder real motion and detail, so decode cost resembles natural
    video more than flat colour does (what the decode benchmark needs).
    """

    def __init__(self, height: int, width: int, seed: int = 0, pad: int = 64):
        rng = np.random.default_rng(seed)
        th, tw = height + pad + 1, width + pad + 1
        coarse = rng.integers(40, 216, size=(th // 16 + 2, tw // 16 + 2, 3), dtype=np.uint8)
        tex = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:th, :tw].astype(np.float32)
        # Two box blurs (separable) turn blocks into soft blobs; then fine stripes for detail.
        for axis in (0, 1, 0, 1):
            tex = (np.roll(tex, 4, axis) + tex + np.roll(tex, -4, axis)) / 3
        yy, xx = np.mgrid[0:th, 0:tw]
        tex += (12 * np.sin(xx / 3.0) * np.cos(yy / 5.0))[..., None]
        self.texture = np.clip(tex, 0, 255).astype(np.uint8)
        self.height, self.width, self.pad = height, width, pad

    def _bounce(self, travel: int) -> int:
        """Offset in [0, pad] moving back and forth, so motion never jumps (no scene cuts)."""
        phase = travel % (2 * self.pad)
        return phase if phase <= self.pad else 2 * self.pad - phase

    def __call__(self, i: int) -> np.ndarray:
        """Background of frame `i`: an (H, W, 3) uint8 copy of a shifted window."""
        dy, dx = self._bounce(2 * i), self._bounce(3 * i)
        return self.texture[dy : dy + self.height, dx : dx + self.width].copy()


def _background_factory(pattern: str, height: int, width: int) -> Callable[[int], np.ndarray]:
    """Per-frame background for `pattern`: "flat" (grey) or "texture" (moving)."""
    if pattern == "flat":
        grey = np.full((height, width, 3), 128, np.uint8)
        return lambda i: grey.copy()
    if pattern == "texture":
        return _MovingTexture(height, width)
    raise ValueError(f"unknown pattern {pattern!r} (expected 'flat' or 'texture')")


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _pixel_format(codec: str, width: int, height: int) -> str:
    """Encoder pixel format: 4:2:0 unless libx264 gets odd dimensions (needs 4:4:4)."""
    if codec == "libx264" and (width % 2 or height % 2):
        return "yuv444p"
    return "yuv420p"


def _write_video(
    path: Path,
    frames: Iterable[np.ndarray],
    pts_ticks: Sequence[int],
    time_base: Fraction,
    rate: Fraction,
    size: tuple[int, int],
    codec: str,
    gop: int | None,
    rotation: int | None,
    crf: int,
    preset: str,
    x264_params: str | None = None,
) -> None:
    """Encode RGB `frames` with the given pts (ticks of `time_base`) into `path`."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = _pixel_format(codec, width, height)
        stream.codec_context.time_base = time_base
        options: dict[str, str] = {}
        if codec == "libx264":
            options.update(preset=preset, crf=str(crf))
            if x264_params:
                options["x264-params"] = x264_params
        else:
            stream.codec_context.bit_rate = max(400_000, int(width * height * float(rate) * 0.5))
        if gop is not None:
            options["g"] = str(gop)
            if codec == "libx264":
                options["keyint_min"] = str(gop)
        stream.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb, pts in zip(frames, pts_ticks):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = int(pts), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _timing(n_frames: int, fps: float, vfr_pts: Sequence[float] | None) -> tuple[list[int], Fraction, Fraction]:
    """Pts ticks, time base and nominal rate for CFR (`fps`) or explicit `vfr_pts` (seconds)."""
    rate = Fraction(fps).limit_denominator(1001)
    if vfr_pts is None:
        return list(range(n_frames)), 1 / rate, rate
    if len(vfr_pts) != n_frames:
        raise ValueError(f"vfr_pts has {len(vfr_pts)} entries for {n_frames} frames")
    time_base = Fraction(1, 90000)
    ticks = [round(t * 90000) for t in vfr_pts]
    if any(b <= a for a, b in zip(ticks, ticks[1:])):
        raise ValueError("vfr_pts must be strictly increasing (at 1/90000 s resolution)")
    return ticks, time_base, rate


def write_index_video(
    path: str | Path,
    n_frames: int,
    fps: float = 25.0,
    size: tuple[int, int] = (160, 120),
    gop: int | None = None,
    codec: str = "libx264",
    vfr_pts: Sequence[float] | None = None,
    rotation: int | None = None,
    pattern: str = "flat",
    crf: int = 23,
    preset: str = "veryfast",
    x264_params: str | None = None,
) -> np.ndarray:
    """Write a video whose frame `i` shows the code of `i` (see `read_frame_index`).

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv, .ts, ...).
        n_frames: number of frames (at most 2**16).
        fps: frame rate for constant-rate video (also the nominal rate with `vfr_pts`).
        size: (width, height) in pixels; odd sizes work (libx264 then uses 4:4:4).
        gop: keyframe interval in frames; None keeps the encoder's default (x264: 250).
        codec: "libx264" (B-frames with the default preset) or "mpeg4".
        vfr_pts: explicit presentation time of every frame in seconds (variable
            frame rate); None for constant rate `fps`.
        rotation: display-matrix rotation in degrees counter-clockwise (the value
            `VideoFrame.rotation` reads back); the stored pixels stay unrotated.
        pattern: background, "flat" grey or "texture" (moving, realistic decode cost).
        crf, preset: libx264 quality and speed.
        x264_params: more libx264 settings, x264's "key=value:key=value" form
            (e.g. "bframes=3" puts B-frames back into the "ultrafast" preset).

    Returns:
        (n_frames,) float64 presentation times in seconds, relative to the first
        frame (what a reader sees after subtracting the stream's start time).
    """
    path = Path(path)
    if not 1 <= n_frames <= 2**INDEX_BITS:
        raise ValueError(f"n_frames must be in 1..{2**INDEX_BITS}, got {n_frames}")
    width, height = size
    ticks, time_base, rate = _timing(n_frames, fps, vfr_pts)
    background = _background_factory(pattern, height, width)
    frames = (draw_frame_index(background(i), i) for i in range(n_frames))
    _write_video(path, frames, ticks, time_base, rate, size, codec, gop, rotation, crf, preset, x264_params)
    return np.array([(t - ticks[0]) * float(time_base) for t in ticks], dtype=np.float64)


# --------------------------------------------------------------------------
# Scene videos (demo)
# --------------------------------------------------------------------------


def solid(color: RGB) -> Callable[[int, int, int], np.ndarray]:
    """A scene fill that paints every frame `color` (R, G, B)."""
    return lambda i, height, width: np.full((height, width, 3), color, np.uint8)


def shape(kind: str, color: RGB, background: RGB = (0, 0, 0), scale: float = 0.5) -> Callable[[int, int, int], np.ndarray]:
    """A scene fill showing one centred "circle", "square" or "triangle".

    The shape spans `scale` of the shorter side, in `color` on `background`.
    """
    if kind not in ("circle", "square", "triangle"):
        raise ValueError(f"unknown shape {kind!r} (expected circle, square or triangle)")

    def fill(i: int, height: int, width: int) -> np.ndarray:
        frame = np.full((height, width, 3), background, np.uint8)
        yy, xx = np.mgrid[0:height, 0:width]
        half = scale * min(height, width) / 2
        dy, dx = yy - (height - 1) / 2, xx - (width - 1) / 2
        if kind == "circle":
            mask = dy**2 + dx**2 <= half**2
        elif kind == "square":
            mask = (np.abs(dy) <= half) & (np.abs(dx) <= half)
        else:  # apex up: width grows linearly from the top edge of the box
            mask = (np.abs(dy) <= half) & (np.abs(dx) <= (dy + half) / 2)
        frame[mask] = color
        return frame

    return fill


def _scene_frames(scenes: Sequence[tuple[int, FrameFill]], height: int, width: int) -> Iterator[np.ndarray]:
    """Yield every frame of `scenes` in order as (H, W, 3) uint8."""
    for n_frames, fill in scenes:
        make = solid(fill) if not callable(fill) else fill
        for i in range(n_frames):
            frame = np.asarray(make(i, height, width), dtype=np.uint8)
            if frame.shape != (height, width, 3):
                raise ValueError(f"scene fill returned shape {frame.shape}, expected {(height, width, 3)}")
            yield frame


def write_scene_video(
    path: str | Path,
    scenes: Sequence[tuple[int, FrameFill]],
    fps: float = 25.0,
    size: tuple[int, int] = (160, 120),
    codec: str = "libx264",
    gop: int | None = None,
) -> np.ndarray:
    """Write a video made of scenes: `[(n_frames, colour or fill), ...]` in order.

    A fill is an RGB tuple or `f(i, height, width) -> (H, W, 3) uint8` (see
    `solid`, `shape`). Returns the frames' presentation times in seconds.
    """
    n_frames = sum(n for n, _ in scenes)
    if n_frames < 1:
        raise ValueError("scenes hold no frames")
    width, height = size
    ticks, time_base, rate = _timing(n_frames, fps, None)
    _write_video(Path(path), _scene_frames(scenes, height, width), ticks, time_base, rate, size, codec, gop, None, 23, "veryfast")
    return np.array(ticks, dtype=np.float64) * float(time_base)


# --------------------------------------------------------------------------
# Shapes anywhere, moving distractors (the synthetic QA task)
# --------------------------------------------------------------------------

SHAPE_KINDS = ("circle", "square", "triangle", "diamond", "cross")
"""Shapes `shape_mask` draws (`shape` above draws the first three, centred)."""


def shape_mask(kind: str, height: int, width: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    """(height, width) bool mask of one filled shape.

    `centre` is (y, x) in pixels, `radius` the half-size of its bounding box
    in pixels. Kinds: "circle", "square", "triangle" (apex up), "diamond"
    (a square turned 45°), "cross" (a plus sign, arms a third of the box wide).
    """
    if kind not in SHAPE_KINDS:
        raise ValueError(f"unknown shape {kind!r} (expected one of {', '.join(SHAPE_KINDS)})")
    yy, xx = np.mgrid[0:height, 0:width]
    dy, dx = yy - centre[0], xx - centre[1]
    inside = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    if kind == "circle":
        return dy**2 + dx**2 <= radius**2
    if kind == "square":
        return inside
    if kind == "triangle":  # width grows linearly from the apex at the top of the box
        return inside & (np.abs(dx) <= (dy + radius) / 2)
    if kind == "diamond":
        return np.abs(dy) + np.abs(dx) <= radius
    arm = radius / 3  # cross
    return inside & ((np.abs(dy) <= arm) | (np.abs(dx) <= arm))


def _bounce(position: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """`position` folded into [low, high] as if bouncing off the walls (a triangle wave)."""
    span = np.maximum(high - low, 1e-9)
    phase = np.mod(position - low, 2 * span)
    return low + np.where(phase <= span, phase, 2 * span - phase)


class MovingBlobs:
    """A scene fill: dim grey discs drifting and bouncing over a dark, lightly noisy ground.

    Distractor motion for the synthetic QA task: consecutive frames differ
    (so no two frames are trivially identical), yet every pixel stays grey
    (R = G = B before compression), clearly unlike a saturated answer shape.
    Frame `i` depends only on (`seed`, `i`), so frames render in any order.

    Args:
        height, width: frame size in pixels.
        seed: everything random (blob sizes, greys, paths, noise) derives from it.
        n_blobs: number of discs.
        ground: grey level (0-255) of the background.
        greys: (low, high) grey levels of the discs.
        radii: (low, high) disc radius in pixels.
        speed: (low, high) disc speed in pixels per frame.
        noise: amplitude (grey levels) of per-frame uniform noise; 0 for none.
    """

    def __init__(
        self,
        height: int,
        width: int,
        seed: int = 0,
        n_blobs: int = 3,
        ground: int = 35,
        greys: tuple[int, int] = (70, 140),
        radii: tuple[float, float] = (5.0, 12.0),
        speed: tuple[float, float] = (0.4, 1.5),
        noise: int = 4,
    ):
        rng = np.random.default_rng(seed)
        self.height, self.width, self.seed, self.ground, self.noise = height, width, seed, ground, noise
        self.radii = rng.uniform(*radii, size=n_blobs)
        self.greys = rng.integers(greys[0], greys[1] + 1, size=n_blobs)
        self.start = rng.uniform(0, 1, size=(n_blobs, 2)) * [height, width]
        angle = rng.uniform(0, 2 * np.pi, size=n_blobs)
        self.velocity = rng.uniform(*speed, size=n_blobs)[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
        self._yy, self._xx = np.mgrid[0:height, 0:width]

    def centres(self, i: int) -> np.ndarray:
        """(n_blobs, 2) disc centres (y, x) in pixels at frame `i`."""
        low = np.stack([self.radii, self.radii], axis=1)
        high = np.array([self.height - 1, self.width - 1]) - low
        return _bounce(self.start + i * self.velocity, low, high)

    def __call__(self, i: int, height: int | None = None, width: int | None = None) -> np.ndarray:
        """Frame `i` as (H, W, 3) uint8 (the size given at construction)."""
        if (height, width) not in ((None, None), (self.height, self.width)):
            raise ValueError(f"MovingBlobs was built for {self.width}x{self.height}, asked for {width}x{height}")
        grey = np.full((self.height, self.width), self.ground, np.int16)
        for (cy, cx), r, level in zip(self.centres(i), self.radii, self.greys):
            grey[(self._yy - cy) ** 2 + (self._xx - cx) ** 2 <= r * r] = level
        if self.noise:
            rng = np.random.default_rng((self.seed, i))  # per frame, so any frame renders alone
            grey += rng.integers(-self.noise, self.noise + 1, size=grey.shape, dtype=np.int16)
        return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


REPRODUCIBLE_X264 = "mbtree=0"
"""x264 settings under which the same frames always encode to the same bytes.

With macroblock-tree rate control on (x264's default), the same frames gave
different files here (PyAV 18, FFmpeg 8.1, 96×72 to 192×144): the first
~8 frames differed by up to 10 grey levels near the right edge, also with
one thread. Without it, every run matched."""


def write_frames_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    n_frames: int,
    fps: float = 25.0,
    size: tuple[int, int] = (160, 120),
    gop: int | None = None,
    crf: int = 23,
    preset: str = "veryfast",
) -> np.ndarray:
    """Encode `n_frames` RGB `frames` ((H, W, 3) uint8) at constant `fps` as H.264, reproducibly.

    Same frames in, same bytes out (`REPRODUCIBLE_X264`), which
    `write_scene_video` does not promise. `size` is (width, height). Returns
    the frames' presentation times in seconds.
    """
    if n_frames < 1:
        raise ValueError("a video needs at least one frame")
    ticks, time_base, rate = _timing(n_frames, fps, None)
    _write_video(Path(path), frames, ticks, time_base, rate, size, "libx264", gop, None, crf, preset, REPRODUCIBLE_X264)
    return np.array(ticks, dtype=np.float64) * float(time_base)
