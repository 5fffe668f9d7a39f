"""A small learnable task for the Stage 2 tests: coloured videos, a LLaVA-Video-178K style
manifest, and a cache extracted from them by the Stage 1 code with the tiny CLIP
(the `colour_task` fixture in conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from hfs.pipeline.demo.videos import solid, write_scene_video
from hfs.stages.cli import app

COLOURS = {"red": (220, 40, 40), "blue": (50, 80, 230)}
N_FRAMES = 8  # frames per video in the cache (paper: 128); the tiny preset selects k = 4


@dataclass(frozen=True)
class ColourTask:
    """Videos that are one colour each, and questions asking for that colour."""

    root: Path
    cache: Path
    manifest: Path  # LLaVA-Video-178K JSON: 16 questions over 8 videos

    def train_args(self, out: Path, *extra: str) -> list[str]:
        """`hfs train` on this task with the tiny preset, small batches and no progress bar."""
        return ["train", "--cache", str(self.cache), "--data", str(self.manifest), "--out", str(out),
                "--preset", "tiny", "--no-progress", "--device", "cpu",
                "--set", "train.batch_size=4", "--set", "train.micro_batch_size=2", "--set", "train.lr=1e-3",
                "--set", "train.num_workers=0", *extra]


def llava_record(rid: str, video: str, question: str, options: list[str], answer: str) -> dict:
    """One LLaVA-Video-178K record with a multiple-choice turn."""
    lines = "\n".join(f"{letter}. {o}" for letter, o in zip("ABCDE", options))
    return {"id": rid, "video": video, "conversations": [
        {"from": "human", "value": f"<video>\n{question}\n{lines}\nAnswer with the option's letter."},
        {"from": "gpt", "value": answer}]}


def write_colour_videos(root: Path, n: int = 8) -> list[tuple[str, str]]:
    """``n`` two-second 64×48 videos, alternately red and blue → [(relative path, colour)]."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        colour = "red" if i % 2 == 0 else "blue"
        rel = f"videos/v{i}.mp4"
        write_scene_video(root / rel, [(20, solid(COLOURS[colour]))], fps=10, size=(64, 48))
        out.append((rel, colour))
    return out


def colour_records(videos: list[tuple[str, str]], per_video: int = 2) -> list[dict]:
    """``per_video`` questions per video, options always "A. red", "B. blue": the tiny teacher
    learns to tell the two colours apart within 30 steps (with the options shuffled per
    question it stays at chance that long)."""
    options = list(COLOURS)
    return [llava_record(f"v{i}-{q}", rel, "What colour is the screen?", options, "AB"[options.index(colour)])
            for i, (rel, colour) in enumerate(videos) for q in range(per_video)]


def extract(manifest: Path, cache: Path) -> None:
    res = CliRunner().invoke(app, ["extract", "--manifest", str(manifest), "--out", str(cache), "--preset", "tiny",
                                   "--frames", str(N_FRAMES), "--workers", "0", "--teacher-frame-size", "64",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output + repr(res.exception)
