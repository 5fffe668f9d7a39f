"""A synthetic video QA set whose questions can only be answered from a few frames.

Each video is mostly grey filler; one short scene (a few frames out of
hundreds) shows a coloured shape. The question asks which shape appears, so
uniform sampling of 16 out of 128 frames often misses the answer while a good
selector finds it. Ground truth (which frames show the shape) is recorded so
frame recall can be measured.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from hfs.pipeline.synthetic import shape, solid, write_scene_video

log = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
FILLER = (128, 128, 128)


@dataclass(frozen=True)
class DemoVideo:
    path: Path
    shape: str
    colour: str
    event_start_s: float  # when the shape appears (seconds)
    event_end_s: float


def make_demo_set(out_dir: str | Path, n_videos: int = 8, seed: int = 0, fps: float = 10.0,
                  seconds: float = 40.0, event_frames: int = 12, size: tuple[int, int] = (96, 72)) -> Path:
    """Write `n_videos` MP4s and a JSONL manifest (`demo.jsonl`) into `out_dir`.

    Returns the manifest path. Existing videos are reused, so a rerun is cheap.
    """
    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    total = int(seconds * fps)
    lines = []
    for i in range(n_videos):
        kind, colour = rng.choice(SHAPES), rng.choice(sorted(COLOURS))
        at = rng.randrange(total // 10, total - event_frames - total // 10)
        path = out_dir / "videos" / f"demo_{i:03d}.mp4"
        if not path.exists():
            scenes = [(at, solid(FILLER)), (event_frames, shape(kind, COLOURS[colour], FILLER, 0.6)),
                      (total - at - event_frames, solid(FILLER))]
            write_scene_video(path, scenes, fps=fps, size=size)
        options = list(SHAPES)
        lines.append({
            "id": f"demo-{i:03d}", "video": f"videos/{path.name}",
            "question": "Which shape appears briefly in the video?",
            "options": options, "answer": options.index(kind),
            "event": [at / fps, (at + event_frames) / fps], "colour": colour,
        })
    manifest = out_dir / "demo.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    log.info("wrote %d synthetic videos and %s", n_videos, manifest)
    return manifest
