"""Display geometry of decoded frames: rotation (FFmpeg's display matrix) and size."""

from __future__ import annotations

import numpy as np


def normalise_rotation(degrees: float) -> int:
    """Counter-clockwise rotation snapped to 0, 90, 180 or 270 degrees."""
    return int(round(degrees / 90.0)) % 4 * 90


def apply_rotation(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Turn an (H, W, C) image `rotation` degrees counter-clockwise (contiguous copy if turned)."""
    k = normalise_rotation(rotation) // 90
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is at most `max_side`; never enlarged."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
