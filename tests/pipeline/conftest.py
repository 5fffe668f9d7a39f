"""Video fixtures for the decoder tests: small synthetic videos built with PyAV.

Every frame carries its own index (see `hfs.pipeline.demo.videos`), so a test
can check to the frame which one a decoder returned. Videos are written once
per session into a temporary folder; nothing binary lives in git.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hfs.pipeline.demo.videos import write_index_video


@dataclass(frozen=True)
class SyntheticVideo:
    """A written index video and the presentation time (s, from frame 0) of each frame."""

    path: Path
    pts: np.ndarray

    def expected_index(self, t: float) -> int:
        """Index of the frame shown at t: the last with pts <= t, else the first."""
        return max(int(np.searchsorted(self.pts, t, side="right")) - 1, 0)


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory) -> Path:
    """A session-wide folder for generated videos."""
    return tmp_path_factory.mktemp("videos")


def _make(video_dir: Path, name: str, n_frames: int, **kwargs) -> SyntheticVideo:
    """Write `name` once per session and return it with its frame times."""
    path = video_dir / name
    pts = write_index_video(path, n_frames, **kwargs)
    return SyntheticVideo(path, pts)


@pytest.fixture(scope="session")
def cfr_video(video_dir) -> SyntheticVideo:
    """Constant 25 fps H.264 (CRF, B-frames), the encoder's default keyframe interval."""
    return _make(video_dir, "cfr.mp4", 100, fps=25)


@pytest.fixture(scope="session")
def long_gop_video(video_dir) -> SyntheticVideo:
    """300 frames with a 250-frame GOP: two keyframes, most targets far from one."""
    return _make(video_dir, "long_gop.mp4", 300, fps=25, gop=250)


@pytest.fixture(scope="session")
def short_gop_video(video_dir) -> SyntheticVideo:
    """250 frames with one keyframe a second (gop = fps) in Matroska."""
    return _make(video_dir, "short_gop.mkv", 250, fps=25, gop=25)


@pytest.fixture(scope="session")
def vfr_video(video_dir) -> SyntheticVideo:
    """Variable frame rate: 80 frames with irregular gaps of 7 ms .. 400 ms."""
    rng = np.random.default_rng(7)
    gaps = rng.choice([0.007, 0.02, 0.04, 0.1, 0.4], size=79)
    pts = np.round(np.concatenate([[0.0], np.cumsum(gaps)]), 3)
    return _make(video_dir, "vfr.mp4", 80, fps=25, gop=12, vfr_pts=pts.tolist())


@pytest.fixture(scope="session")
def ts_video(video_dir) -> SyntheticVideo:
    """MPEG-TS: the stream clock starts at a non-zero time."""
    return _make(video_dir, "offset.ts", 60, fps=25, gop=10)


@pytest.fixture(scope="session")
def short_video(video_dir) -> SyntheticVideo:
    """Ten frames: fewer frames than targets."""
    return _make(video_dir, "ten.mp4", 10, fps=25)


@pytest.fixture(scope="session")
def rotated_video(video_dir) -> SyntheticVideo:
    """Stored 160x120 with a display matrix turning it 90° counter-clockwise."""
    return _make(video_dir, "rotated.mp4", 30, fps=25, rotation=90)
