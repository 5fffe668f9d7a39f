"""A synthetic video QA task that only the right frames answer (what `hfs demo` trains and evaluates on).

Every video shows dim grey discs drifting over a dark, lightly noisy ground
(`synthetic.MovingBlobs`), so no two frames are identical. Once or twice, at
a random time, a saturated coloured shape (5 colours × 5 shapes) flashes for
a short **event** of a few frames. Each video carries one multiple-choice
question about its event(s), the answer shuffled among the options:

| kind     | events | question                                                 | NExT-QA `type`          |
|----------|--------|----------------------------------------------------------|-------------------------|
| `colour` | 1      | What colour is the shape that briefly appears?           | DO (descriptive, other) |
| `shape`  | 1      | Which shape briefly appears?                             | DO                      |
| `order`  | 2      | What colour is the shape that appears after the square?  | TN (temporal, next)     |
|          |        | What colour is the shape that appears before the cross?  | TP (temporal, previous) |

An `order` question names the other event (its anchor) by its shape and
offers the anchor's colour among the options, so it needs both events.

**Query-aware kinds.** In the kinds above every event bears the answer, so one
question-blind selection (find the coloured flash) serves every question. In
these, a video holds `TaskConfig.n_events` events (default 3), all of
different colours *and* shapes at different times, and the question names one
of them; the others are distractors, whose attributes are among the options:

| kind          | answer-bearing events | question                                                      | `type` |
|---------------|-----------------------|---------------------------------------------------------------|--------|
| `query_shape` | the named one         | What shape was the red object?                                | DO     |
| `query_colour`| the named one         | What colour was the triangle?                                 | DO     |
| `query_order` | the anchor and the next (previous) one | What colour is the shape that appears right after the square? | TN / TP |
| `query_pair`  | the named pair                        | Which colour was shown together with the red shape?           | DO     |

In `query_pair` every event is a **pair**: two shapes of different colours shown at once, side
by side (two `Event`s with the same frames). The named pair's two colours are in no other pair;
the other pairs draw theirs from the remaining colours (so those repeat among the distractors),
and the options are colours, the named one among them (shown, but not the answer). Only colours need reading, to find the frames (the
named colour) and to answer (the other colour shown with it): the kind that the demo's tiny
teacher, fitted in minutes on a CPU, can read (it reads colour within a few hundred steps and
shapes not at all in that budget: benchmarks/RESULTS.md, 2026-12-08), while the right frames
still depend on the question.

So the right frames depend on the question. The ground truth's `events` are
only the answer-bearing ones; the distractors are in `distractors`.

**Event length against the frame grid.** Stage 1 keeps N = 128 frames per
video: the frames shown at the segment centres t_i = (i + 0.5)·D/N of a video
of D seconds, "shown at t" meaning the last frame with pts <= t
(`hfs.pipeline.decode`). An event lasts c grid steps, c·D/N seconds rounded to
whole frames, with c ~ U(0.8, 3.2) by default: it covers ⌊c⌋ or ⌈c⌉ grid frames
(about 2 on average; none only when c < 1, about 1% of events). A selector
that finds it can answer; uniform 16-of-128 (every 8th grid frame) catches an
event covering h grid frames with probability h/8, about 25%. `make_task`
measures both and writes them to `task.json` ("summary").

**Files** (`make_task`), all paths in them relative:

    out_dir/
      task.json                          seed, config, counts, grid-hit summary
      train/train.json                   LLaVA-Video-178K JSON list (read_manifest)
      train/videos/train_0000.mp4 ...
      train/ground_truth.jsonl           one QuestionTruth per line
      test/MC/test-00000-of-00001.parquet  NExT-QA, the lmms-lab/NExTQA "MC" view
      test/NExTVideo/{video}.mp4         where the NExT-QA reader looks
      test/ground_truth.jsonl

The NExT-QA view always has five options (`a0`..`a4`, all non-empty, as the
reader requires), so test questions have five; training questions have
`TaskConfig.n_options` (default also five, so a teacher trained here has seen
every answer letter it is tested on).

Same seed and config → byte-identical manifests, ground truth and videos
(x264 without macroblock-tree rate control: `synthetic.REPRODUCIBLE_X264`
says why). Each question is drawn from its own random stream
(seed, split, index), so growing `n_train` keeps the first questions. A rerun
into the same folder reuses the videos there; a different seed or config is
an error that says what differs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hfs.manifests.answers import option_letter
from hfs.pipeline.decode import segment_centre_timestamps
from hfs.pipeline.demo.videos import SHAPE_KINDS, MovingBlobs, shape_mask, write_frames_video
from hfs.pipeline.evaluation.recall import EventTruth, QuestionTruth, event_recall
from hfs.pipeline.evaluation.selectors.basic import uniform_indices

log = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
    "magenta": (210, 50, 200),
}
"""Answer colours (RGB): saturated and far apart in hue, unlike the grey distractors."""

SHAPES: tuple[str, ...] = SHAPE_KINDS
KINDS = ("colour", "shape", "order")
QUERY_KINDS = ("query_shape", "query_colour", "query_order", "query_pair")
"""Kinds whose video holds `TaskConfig.n_events` events, the question naming one (module docstring)."""
ALL_KINDS = KINDS + QUERY_KINDS
NEXTQA_OPTIONS = 5  # the NExT-QA view has a0..a4, every one non-empty
PROMPT_SUFFIX = "Answer with the option's letter from the given choices directly."
TASK_FORMAT = 2  # version of the task.json / ground-truth layout (2: config.n_events, truth's distractors)
TRAIN_SOURCE = "hfs_synthetic"  # `data_source` of the training records
TEST_PARQUET = "MC/test-00000-of-00001.parquet"
_SPLITS = {"train": 0, "test": 1}  # part of each question's random stream


@dataclass(frozen=True)
class TaskConfig:
    """How the synthetic videos and questions are drawn. Every field is part of a task's identity.

    Attributes:
        size: (width, height) of the videos in pixels.
        fps_range: (low, high) integer frame rate, frames per second, both included.
        duration_range_s: (low, high) video length in seconds.
        grid_n: N, the frames per video Stage 1 keeps (the grid the ground truth indexes).
        event_grid_steps: (low, high) event length in grid steps (one step is
            duration / grid_n seconds), drawn uniformly, then rounded to whole frames.
        margin_s: no event starts in the first or ends in the last `margin_s` seconds.
        min_gap_s: seconds between the two events of an `order` question, at least.
        shape_scale: a shape's box side as a fraction of the shorter frame side.
        n_blobs: grey distractor discs per video.
        noise: per-frame grey noise amplitude (grey levels).
        n_options: options per training question, 2..5 (test questions always have 5).
        kinds: question kinds, used in turn (question i is `kinds[i % len(kinds)]`): any of
            `KINDS` and `QUERY_KINDS`.
        n_events: events per video of a query-aware kind (2 .. 5; `query_order` needs 3 or more,
            so at least one is a distractor). The other kinds keep theirs (1, or 2 for `order`).
        shuffle_options: the options in a random order (True), or in the vocabulary's own
            order (red, green, blue, yellow, magenta; circle, square, ...), so each letter
            always names the same colour or shape: a small teacher trained from scratch
            learns that in minutes, where matching shuffled option texts takes far longer.
    """

    size: tuple[int, int] = (96, 72)
    fps_range: tuple[int, int] = (8, 15)
    duration_range_s: tuple[float, float] = (20.0, 60.0)
    grid_n: int = 128
    event_grid_steps: tuple[float, float] = (0.8, 3.2)
    margin_s: float = 1.0
    min_gap_s: float = 3.0
    shape_scale: float = 0.45
    n_blobs: int = 3
    noise: int = 4
    n_options: int = 5
    kinds: tuple[str, ...] = KINDS
    shuffle_options: bool = True
    n_events: int = 3

    def __post_init__(self):
        if not 2 <= self.n_options <= min(len(COLOURS), len(SHAPES)):
            raise ValueError(f"n_options must be in 2..{min(len(COLOURS), len(SHAPES))}, got {self.n_options}")
        unknown = [k for k in self.kinds if k not in ALL_KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {ALL_KINDS}, got {self.kinds}")
        lowest = 3 if "query_order" in self.kinds else 2
        if not lowest <= self.n_events <= min(len(COLOURS), len(SHAPES)):
            raise ValueError(f"n_events must be in {lowest}..{min(len(COLOURS), len(SHAPES))}"
                             f"{' (query_order needs a distractor)' if lowest == 3 else ''}, got {self.n_events}")
        if self.fps_range[0] < 1 or self.fps_range[0] > self.fps_range[1]:
            raise ValueError(f"fps_range must be (low, high) with 1 <= low <= high, got {self.fps_range}")
        if self.duration_range_s[0] <= 2 * self.margin_s or self.duration_range_s[0] > self.duration_range_s[1]:
            raise ValueError(f"duration_range_s {self.duration_range_s} must exceed twice margin_s ({self.margin_s})")

    def as_json(self) -> dict:
        """The config as JSON values (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# ---------------------------------------------------------------------------
# Time on the frame grid (the decoder's rule)


def grid_timestamps(duration: float, n: int = 128) -> np.ndarray:
    """(n,) seconds Stage 1 samples: t_i = (i + 0.5) · duration / n (segment centres)."""
    return segment_centre_timestamps(0.0, duration, n)


def frame_shown(t: float | np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """Index of the frame shown at `t` seconds in a constant-rate video: the last frame with pts <= t.

    Frame j starts at j / fps seconds. A time on a frame's start (to float
    noise) gets that frame, as the decoder's floor-with-nudge does; times
    before the first or after the last frame get the first or the last.
    """
    # The decoder floors t / time_base + 1e-6 ticks; at 1024 ticks a frame that is ~1e-9 frames.
    index = np.floor(np.asarray(t, dtype=np.float64) * fps + 1e-9).astype(np.int64)
    return np.clip(index, 0, n_frames - 1)


def grid_hits(span: tuple[float, float], duration: float, n: int = 128) -> list[int]:
    """Grid indices i (0 .. n-1) whose time t_i = (i + 0.5)·duration/n falls in `span`.

    `span` is [start_s, end_s) in seconds on the video's timeline. For an
    event spanning whole frames [f0/fps, f1/fps) these are exactly the grid
    frames that show it (a t_i on the start counts, on the end does not,
    matching `frame_shown`).
    """
    start, end = span
    times = grid_timestamps(duration, n)
    eps = 1e-9  # float noise at a frame boundary: the boundary belongs to the frame that starts there
    return np.flatnonzero((times + eps >= start) & (times + eps < end)).tolist()


def uniform_catch_probability(hits: Sequence[int], n: int = 128, k: int = 16) -> float:
    """Probability that k-of-n uniform sampling with a random phase selects one of `hits`.

    Uniform sampling keeps every (n/k)-th grid frame (n divisible by k); over
    the n/k equally likely phases, the share whose lattice meets `hits`. For
    a run of h consecutive grid frames this is min(h, n/k) / (n/k).
    """
    if n % k:
        raise ValueError(f"n ({n}) must be a multiple of k ({k})")
    stride = n // k
    phases = {i % stride for i in hits}
    return len(phases) / stride


# ---------------------------------------------------------------------------
# What a task is made of


@dataclass(frozen=True)
class Event:
    """A coloured shape shown over frames [start_frame, end_frame) of a video.

    `centre` is (y, x) and `radius` the half box side, in pixels.
    """

    colour: str
    shape: str
    start_frame: int
    end_frame: int
    centre: tuple[float, float]
    radius: float

    def span(self, fps: float) -> tuple[float, float]:
        """[start_s, end_s) in seconds: from the first frame's start to the end of the last one."""
        return self.start_frame / fps, self.end_frame / fps


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video, frame by frame.

    `fps` frames per second (constant), `n_frames` frames, `size` (width,
    height) pixels, `background_seed` seeds the distractors, `events` in time order.
    """

    fps: int
    n_frames: int
    size: tuple[int, int]
    background_seed: int
    n_blobs: int
    noise: int
    events: tuple[Event, ...]

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end (what the decoder probes)."""
        return self.n_frames / self.fps


@dataclass(frozen=True)
class TaskItem:
    """One video and its question.

    `kind` is one of `ALL_KINDS`; `qtype` the NExT-QA type code ("DO", "TN",
    "TP"). `answer_events` are the indices (into `video.events`, time order) of
    the events that bear the answer: every event for `KINDS`, the named one(s)
    for `QUERY_KINDS`. `answer_index` is 0-based into `options`.
    """

    split: str
    index: int
    kind: str
    qtype: str
    question: str
    options: tuple[str, ...]
    answer_index: int
    video: VideoSpec
    answer_events: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.answer_events:  # every event bears the answer
            object.__setattr__(self, "answer_events", tuple(range(len(self.video.events))))

    @property
    def sample_id(self) -> str:
        """The id the readers give the question: the record id (train) or "{video}_{qid}" (NExT-QA)."""
        return f"synth-train-{self.index:04d}" if self.split == "train" else f"{self.index}_0"

    @property
    def video_path(self) -> str:
        """The video file, relative to the split's folder."""
        return f"videos/train_{self.index:04d}.mp4" if self.split == "train" else f"NExTVideo/{self.index}.mp4"


@dataclass(frozen=True)
class TaskFiles:
    """What `make_task` wrote (absolute paths) and its summary.

    `test_dir` is the NExT-QA data folder: `get_benchmark("nextqa").read(test_dir)`.
    `summary` holds the grid-hit statistics per split (see `grid_summary`).
    """

    root: Path
    task_json: Path
    train_manifest: Path
    train_truth: Path
    test_dir: Path
    test_annotations: Path
    test_truth: Path
    summary: dict


# ---------------------------------------------------------------------------
# Drawing a task (pure: no files)


def _event_frames(rng: np.random.Generator, n_frames: int, config: TaskConfig) -> int:
    """Event length in frames: c grid steps, c ~ U(event_grid_steps), at least one frame."""
    steps = rng.uniform(*config.event_grid_steps)
    return max(1, round(steps * n_frames / config.grid_n))


def _place_events(rng: np.random.Generator, lengths: Sequence[int], n_frames: int, fps: int,
                  config: TaskConfig) -> list[tuple[int, int]]:
    """Frame spans [start, end) of events of the given lengths: in time order, inside the margins,
    `min_gap_s` apart."""
    margin = round(config.margin_s * fps)
    gap = round(config.min_gap_s * fps)
    for _ in range(1000):  # rejection sampling; the config check makes success overwhelmingly likely
        starts = [int(rng.integers(margin, n_frames - margin - length + 1)) for length in lengths]
        spans = sorted((start, start + length) for start, length in zip(starts, lengths))
        if all(b[0] - a[1] >= gap for a, b in zip(spans, spans[1:])):
            return spans
    raise ValueError(f"cannot place {len(lengths)} events {config.min_gap_s}s apart in {n_frames / fps:.1f}s")


def _options(rng: np.random.Generator, vocabulary: Sequence[str], must: Sequence[str], answer: str,
             n: int, shuffle: bool = True) -> tuple[tuple[str, ...], int]:
    """`n` distinct options holding every word of `must`, the rest drawn from `vocabulary`;
    shuffled, or (``shuffle=False``) in the vocabulary's order (the same draws either way).

    Returns (options, index of `answer`).
    """
    others = [w for w in vocabulary if w not in must]
    picked = list(must) + [others[i] for i in rng.permutation(len(others))[: n - len(must)]]
    options = tuple(picked[i] for i in rng.permutation(len(picked)))
    if not shuffle:
        options = tuple(sorted(options, key=list(vocabulary).index))
    return options, options.index(answer)


def _draw_video(rng: np.random.Generator, n_events: int, fps: int, n_frames: int,
                config: TaskConfig) -> tuple[list[Event], VideoSpec]:
    """`n_events` events of distinct colours and shapes, placed in time, and the video that shows them."""
    width, height = config.size
    colours = [list(COLOURS)[i] for i in rng.permutation(len(COLOURS))[:n_events]]
    shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:n_events]]
    lengths = [_event_frames(rng, n_frames, config) for _ in range(n_events)]
    spans = _place_events(rng, lengths, n_frames, fps, config)
    radius = config.shape_scale * min(width, height) / 2
    events = []
    for colour, kind_of_shape, (start, end) in zip(colours, shapes, spans):
        # The whole box stays inside the frame, one pixel from the edge.
        cy = float(rng.uniform(radius + 1, height - radius - 2))
        cx = float(rng.uniform(radius + 1, width - radius - 2))
        events.append(Event(colour, kind_of_shape, start, end, (round(cy, 2), round(cx, 2)), radius))
    video = VideoSpec(fps, n_frames, (width, height), int(rng.integers(2**31)), config.n_blobs, config.noise,
                      tuple(events))
    return events, video


def plan_item(split: str, index: int, seed: int, config: TaskConfig) -> TaskItem:
    """Draw question `index` of `split` ("train" or "test") from its own random stream (seed, split, index)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    rng = np.random.default_rng((seed, _SPLITS[split], index))
    fps = int(rng.integers(config.fps_range[0], config.fps_range[1] + 1))
    n_frames = max(1, round(rng.uniform(*config.duration_range_s) * fps))
    kind = config.kinds[index % len(config.kinds)]
    if kind in QUERY_KINDS:
        return _plan_query_item(rng, split, index, kind, fps, n_frames, config)
    events, video = _draw_video(rng, 2 if kind == "order" else 1, fps, n_frames, config)

    n_options = config.n_options if split == "train" else NEXTQA_OPTIONS
    if kind == "colour":
        qtype, question = "DO", "What colour is the shape that briefly appears?"
        options, answer = _options(rng, list(COLOURS), [events[0].colour], events[0].colour, n_options,
                                   config.shuffle_options)
    elif kind == "shape":
        qtype, question = "DO", "Which shape briefly appears?"
        options, answer = _options(rng, SHAPES, [events[0].shape], events[0].shape, n_options, config.shuffle_options)
    else:
        after = bool(rng.integers(2))  # ask for the second event's colour (TN) or the first's (TP)
        anchor, target = (events[0], events[1]) if after else (events[1], events[0])
        qtype = "TN" if after else "TP"
        question = f"What colour is the shape that appears {'after' if after else 'before'} the {anchor.shape}?"
        options, answer = _options(rng, list(COLOURS), [target.colour, anchor.colour], target.colour, n_options,
                                   config.shuffle_options)
    return TaskItem(split, index, kind, qtype, question, options, answer, video)


def _plan_query_item(rng: np.random.Generator, split: str, index: int, kind: str, fps: int, n_frames: int,
                     config: TaskConfig) -> TaskItem:
    """The rest of `plan_item` for a query-aware kind: `config.n_events` events of distinct colours
    and shapes, one named by the question (module docstring)."""
    n_events = config.n_events
    n_options = config.n_options if split == "train" else NEXTQA_OPTIONS
    if kind == "query_pair":
        return _plan_pair_item(rng, split, index, fps, n_frames, n_options, config)
    events, video = _draw_video(rng, n_events, fps, n_frames, config)
    if kind == "query_order":
        after = bool(rng.integers(2))  # the event right after the anchor (TN) or right before it (TP)
        anchor_at = int(rng.integers(0, n_events - 1)) + (0 if after else 1)
        target_at = anchor_at + (1 if after else -1)
        anchor, target = events[anchor_at], events[target_at]
        qtype = "TN" if after else "TP"
        question = (f"What colour is the shape that appears right {'after' if after else 'before'} "
                    f"the {anchor.shape}?")
        others = [e.colour for i, e in enumerate(events) if i not in (anchor_at, target_at)]
        must = [target.colour, anchor.colour, *others][:n_options]
        options, answer = _options(rng, list(COLOURS), must, target.colour, n_options, config.shuffle_options)
        answer_events = tuple(sorted((anchor_at, target_at)))
    else:
        target_at = int(rng.integers(n_events))
        target = events[target_at]
        if kind == "query_shape":
            question, vocabulary, attribute = f"What shape was the {target.colour} object?", SHAPES, "shape"
        else:
            question, vocabulary, attribute = f"What colour was the {target.shape}?", list(COLOURS), "colour"
        others = [getattr(e, attribute) for i, e in enumerate(events) if i != target_at]
        must = [getattr(target, attribute), *others][:n_options]
        qtype = "DO"
        options, answer = _options(rng, vocabulary, must, getattr(target, attribute), n_options,
                                   config.shuffle_options)
        answer_events = (target_at,)
    return TaskItem(split, index, kind, qtype, question, options, answer, video, answer_events)


def _pair_centres(rng: np.random.Generator, radius: float, width: int, height: int) -> list[tuple[float, float]]:
    """(y, x) centres of two shape boxes of half side `radius` inside the frame that do not overlap."""
    for _ in range(1000):
        centres = [(float(rng.uniform(radius + 1, height - radius - 2)), float(rng.uniform(radius + 1, width - radius - 2)))
                   for _ in range(2)]
        (y0, x0), (y1, x1) = centres
        if max(abs(y0 - y1), abs(x0 - x1)) >= 2 * radius + 2:
            return [(round(y, 2), round(x, 2)) for y, x in centres]
    raise ValueError(f"two shapes of side {2 * radius:.0f} px do not fit side by side in {width}x{height}")


def _plan_pair_item(rng: np.random.Generator, split: str, index: int, fps: int, n_frames: int, n_options: int,
                    config: TaskConfig) -> TaskItem:
    """A `query_pair` question (module docstring): `config.n_events` pairs of shapes, the named colour
    and its partner (the answer) in one pair only."""
    width, height = config.size
    palette = list(COLOURS)
    named = palette[int(rng.integers(len(palette)))]
    rest = [c for c in palette if c != named]
    target_at = int(rng.integers(config.n_events))
    lengths = [_event_frames(rng, n_frames, config) for _ in range(config.n_events)]
    spans = _place_events(rng, lengths, n_frames, fps, config)
    radius = config.shape_scale * min(width, height) / 2
    partner = rest[int(rng.integers(len(rest)))]
    others = [c for c in rest if c != partner]
    events = []
    for j, (start, end) in enumerate(spans):
        if j == target_at:
            colours = [named, partner]
        else:
            colours = [others[i] for i in rng.permutation(len(others))[:2]]
        shapes = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:2]]
        if rng.integers(2):  # the named colour left or right, above or below
            colours.reverse()
        for colour, shape_kind, centre in zip(colours, shapes, _pair_centres(rng, radius, width, height)):
            events.append(Event(colour, shape_kind, start, end, centre, radius))
    video = VideoSpec(fps, n_frames, (width, height), int(rng.integers(2**31)), config.n_blobs, config.noise,
                      tuple(events))
    question = f"Which colour was shown together with the {named} shape?"
    options, answer = _options(rng, palette, [partner, named], partner, n_options, config.shuffle_options)
    return TaskItem(split, index, "query_pair", "DO", question, options, answer, video,
                    (2 * target_at, 2 * target_at + 1))


def plan_task(n_train: int, n_test: int, seed: int = 0, config: TaskConfig | None = None) -> list[TaskItem]:
    """Every question of a task, train then test (pure; see `plan_item`)."""
    config = config or TaskConfig()
    return [plan_item("train", i, seed, config) for i in range(n_train)] + \
           [plan_item("test", i, seed, config) for i in range(n_test)]


def question_truth(item: TaskItem, grid_n: int = 128) -> QuestionTruth:
    """The ground truth of `item`: spans in seconds, frames and grid hits of its answer-bearing
    events (`events`) and of the others (`distractors`)."""
    spec = item.video
    events, distractors = [], []
    for i, e in enumerate(spec.events):
        span = e.span(spec.fps)
        (events if i in item.answer_events else distractors).append(
            EventTruth(e.colour, e.shape, span[0], span[1], e.start_frame, e.end_frame,
                       tuple(grid_hits(span, spec.duration, grid_n))))
    return QuestionTruth(
        sample_id=item.sample_id,
        split=item.split,
        qid=0 if item.split == "test" else None,
        video=f"{item.split}/{item.video_path}",
        kind=item.kind,
        type=item.qtype,
        question=item.question,
        options=item.options,
        answer_index=item.answer_index,
        duration_s=spec.duration,
        fps=float(spec.fps),
        n_frames=spec.n_frames,
        grid_n=grid_n,
        events=tuple(events),
        distractors=tuple(distractors),
    )


# ---------------------------------------------------------------------------
# Rendering


def video_fill(spec: VideoSpec) -> Callable[[int, int, int], np.ndarray]:
    """Frame `i` of `spec` as a scene fill: `f(i, height, width) -> (H, W, 3) uint8`.

    Frame i is the moving grey background with every event active at i
    (start_frame <= i < end_frame) painted over it in its colour.
    """
    width, height = spec.size
    background = MovingBlobs(height, width, seed=spec.background_seed, n_blobs=spec.n_blobs, noise=spec.noise)
    masks = [shape_mask(e.shape, height, width, e.centre, e.radius) for e in spec.events]

    def fill(i: int, h: int, w: int) -> np.ndarray:
        frame = background(i, h, w)
        for event, mask in zip(spec.events, masks):
            if event.start_frame <= i < event.end_frame:
                frame[mask] = COLOURS[event.colour]
        return frame

    return fill


def _partial(path: Path, keep_suffix: bool = False) -> Path:
    """A temporary name beside ``path`` for writing it, its own to this process and thread: two runs
    making the same task folder at once (two benchmarks side by side) never write one file together.
    ``keep_suffix``: end in ``path``'s suffix (a video writer picks its container by it)."""
    tag = f"{os.getpid()}-{threading.get_ident()}"
    if keep_suffix:
        return path.with_name(f".{path.stem}.{tag}.partial{path.suffix}")
    return path.with_name(f".{path.name}.{tag}.partial")


def write_task_video(spec: VideoSpec, path: str | Path) -> None:
    """Render and encode `spec` (H.264 MP4) to `path`, written under a temporary name and renamed.

    Reproducible (`synthetic.write_frames_video`): the same spec gives the
    same bytes. A killed run leaves no half-written file under the final
    name, so a rerun may trust every video it finds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path, keep_suffix=True)  # the suffix picks the container
    width, height = spec.size
    fill = video_fill(spec)
    write_frames_video(tmp, (fill(i, height, width) for i in range(spec.n_frames)), spec.n_frames, fps=spec.fps,
                       size=spec.size)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Files


def _llava_record(item: TaskItem) -> dict:
    """One LLaVA-Video-178K record: a human turn with the lettered options, a gpt turn with the letter."""
    lines = "\n".join(f"{option_letter(i)}. {option}" for i, option in enumerate(item.options))
    return {
        "id": item.sample_id,
        "data_source": TRAIN_SOURCE,
        "video": item.video_path,
        "conversations": [
            {"from": "human", "value": f"<video>\n{item.question}\n{lines}\n{PROMPT_SUFFIX}"},
            {"from": "gpt", "value": option_letter(item.answer_index)},
        ],
    }


def _write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_nextqa_parquet(path: Path, items: Sequence[TaskItem]) -> None:
    """The lmms-lab/NExTQA "MC" columns, one row per question (`answer` is the 0-based option index)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list] = {name: [] for name in
                                ("video", "frame_count", "width", "height", "question", "answer", "qid", "type")}
    columns.update({f"a{i}": [] for i in range(NEXTQA_OPTIONS)})
    for item in items:
        width, height = item.video.size
        for name, value in (("video", item.index), ("frame_count", item.video.n_frames), ("width", width),
                            ("height", height), ("question", item.question), ("answer", item.answer_index),
                            ("qid", 0), ("type", item.qtype)):
            columns[name].append(value)
        for i, option in enumerate(item.options):
            columns[f"a{i}"].append(option)
    types = {"question": pa.string(), "type": pa.string(), **{f"a{i}": pa.string() for i in range(NEXTQA_OPTIONS)}}
    table = pa.table({name: pa.array(values, type=types.get(name, pa.int64())) for name, values in columns.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _jsonl(records: Sequence[Mapping]) -> str:
    """One compact JSON object per line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _check_task_json(path: Path, identity: dict) -> None:
    """Make sure an existing task folder was made with the same seed and config; ValueError naming what differs."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read ({exc}); remove the folder or choose another") from None
    old_identity = {k: old.get(k) for k in identity}
    if old_identity.get("format") == 1 and isinstance(old_identity.get("config"), dict):
        # format 1 had no query-aware kinds and no n_events: its questions are drawn as now
        old_identity = {**old_identity, "format": TASK_FORMAT,
                        "config": {**old_identity["config"], "n_events": TaskConfig().n_events}}
    elif old_identity.get("format") != TASK_FORMAT:
        raise ValueError(f"{path}: task format {old_identity.get('format')!r}, this hfs reads 1 to {TASK_FORMAT}; "
                         "remake the task in another folder")
    if old_identity == identity:
        return
    diffs = []
    for key in identity:
        if key == "config" and isinstance(old_identity.get(key), dict):
            diffs += [f"config.{k}: {old_identity[key].get(k)!r} -> {v!r}"
                      for k, v in identity[key].items() if old_identity[key].get(k) != v]
        elif old_identity.get(key) != identity[key]:
            diffs.append(f"{key}: {old_identity.get(key)!r} -> {identity[key]!r}")
    raise ValueError(f"{path.parent} holds a task made differently ({'; '.join(diffs)}); "
                     "its videos would not match: choose another folder")


def make_task(out_dir: str | Path, n_train: int = 48, n_test: int = 24, seed: int = 0,
              config: TaskConfig | None = None) -> TaskFiles:
    """Write the synthetic task into `out_dir`: videos, training manifest, NExT-QA test set, ground truth.

    See the module docstring for the layout. Videos already in `out_dir` are
    reused (they are written atomically, so any that exists is whole); a
    folder made with another seed or config raises ValueError. Returns the
    paths written and the grid-hit summary (also in `task.json`).
    """
    config = config or TaskConfig()
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train}, {n_test}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    task_json = root / "task.json"
    identity = {"format": TASK_FORMAT, "seed": seed, "config": config.as_json()}
    _check_task_json(task_json, identity)
    # Written before any video, so a killed run's videos are known to belong to this seed and config.
    _write_text(task_json, json.dumps({**identity, "n_train": n_train, "n_test": n_test, "summary": None},
                                      indent=2) + "\n")

    items = plan_task(n_train, n_test, seed, config)
    written = 0
    for item in items:
        path = root / item.split / item.video_path
        if not path.exists():
            write_task_video(item.video, path)
            written += 1
    log.info("synthetic task in %s: %d videos written, %d reused", root, written, len(items) - written)

    train = [i for i in items if i.split == "train"]
    test = [i for i in items if i.split == "test"]
    files = TaskFiles(
        root=root.resolve(),
        task_json=task_json.resolve(),
        train_manifest=(root / "train" / "train.json").resolve(),
        train_truth=(root / "train" / "ground_truth.jsonl").resolve(),
        test_dir=(root / "test").resolve(),
        test_annotations=(root / "test" / TEST_PARQUET).resolve(),
        test_truth=(root / "test" / "ground_truth.jsonl").resolve(),
        summary={},
    )
    records = [_llava_record(i) for i in train]
    _write_text(files.train_manifest, json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    _write_nextqa_parquet(files.test_annotations, test)
    (files.test_dir / "NExTVideo").mkdir(parents=True, exist_ok=True)  # the reader's video folder, even when empty
    truths = {"train": [question_truth(i, config.grid_n) for i in train],
              "test": [question_truth(i, config.grid_n) for i in test]}
    _write_text(files.train_truth, _jsonl([t.to_json() for t in truths["train"]]))
    _write_text(files.test_truth, _jsonl([t.to_json() for t in truths["test"]]))

    summary = {split: grid_summary(group) for split, group in truths.items()}
    _write_text(task_json, json.dumps({**identity, "n_train": n_train, "n_test": n_test, "summary": summary},
                                      indent=2) + "\n")
    for split, s in summary.items():
        if s["questions"]:
            log.info("%s: %d questions, %.2f answer-bearing grid frames per event (of %d), uniform %d-of-%d "
                     "catches an event with p=%.2f", split, s["questions"], s["mean_grid_hits_per_event"],
                     config.grid_n, s["uniform_k"], config.grid_n, s["uniform_catch_probability_per_event"])
    return dataclasses.replace(files, summary=summary)


# ---------------------------------------------------------------------------
# How the events sit on the grid


def grid_summary(truths: Sequence[QuestionTruth], k: int = 16) -> dict[str, Any]:
    """How the events sit on the grid: grid hits per event and question, and what uniform k-of-N catches.

    `uniform_catch_probability_*` average `uniform_catch_probability` (random
    phase) over events / questions (any event, and every event);
    `uniform_recall` is `event_recall` of the fixed centred uniform selection
    (`selectors.basic.uniform_indices`).
    """
    events = [e for t in truths for e in t.events]
    if not truths:
        return {"questions": 0, "events": 0, "uniform_k": k}
    n = truths[0].grid_n

    def mean(values) -> float:
        return round(float(np.mean(values)), 4)

    def catch_any(t: QuestionTruth) -> float:
        return uniform_catch_probability(t.grid_hits, n, k)

    def catch_all(t: QuestionTruth) -> float:
        stride = n // k  # share of phases whose lattice meets every event
        return sum(all(any(i % stride == p for i in e.grid_hits) for e in t.events) for p in range(stride)) / stride

    uniform = event_recall({t.sample_id: uniform_indices(n, k) for t in truths},
                           {t.sample_id: t for t in truths})
    return {
        "questions": len(truths),
        "events": len(events),
        "grid_n": n,
        "uniform_k": k,
        "mean_grid_hits_per_event": mean([len(e.grid_hits) for e in events]),
        "mean_grid_hits_per_question": mean([len(t.grid_hits) for t in truths]),
        "events_without_grid_hits": sum(not e.grid_hits for e in events),
        "grid_hits_histogram": {str(h): sum(len(e.grid_hits) == h for e in events)
                                for h in range(max(len(e.grid_hits) for e in events) + 1)},
        "mean_event_frames": mean([e.end_frame - e.start_frame for e in events]),
        "mean_event_s": mean([e.end_s - e.start_s for e in events]),
        "uniform_catch_probability_per_event": mean([uniform_catch_probability(e.grid_hits, n, k) for e in events]),
        "uniform_catch_probability_any_event": mean([catch_any(t) for t in truths]),
        "uniform_catch_probability_all_events": mean([catch_all(t) for t in truths]),
        "uniform_recall": round(uniform.recall, 4),
        "uniform_all_events_recall": round(uniform.all_events_recall, 4),
        "uniform_mean_hits": round(uniform.mean_hits, 4),
    }
