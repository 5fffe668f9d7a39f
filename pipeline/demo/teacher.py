"""The stand-in teacher of `hfs demo`: the tiny teacher fitted to read the synthetic frames.

The paper's teacher is a pretrained video LLM: shown the right frames, it answers. The tiny
random teacher of the ``tiny`` preset cannot, and a selector trained against a teacher that
cannot answer learns nothing from its answers. So the demo first fits the tiny teacher, vision
tower included (``fit_teacher``): a stand-in for pretraining, done once, before HFS training
starts. HFS training then never sees the ground truth; it learns from the teacher's answers.

How it is fitted, and why (``benchmarks/probe_teacher_fit.py``, RESULTS.md 2026-12-07):

- **A stream, not a video set.** Every sample of every step is a new item from the task's
  generator (``plan_item("train", i, seed, config)``, i never repeats; the demo passes a seed no
  training or test video uses), its frames rendered straight from the video spec and passed
  through the cache's own JPEG encoding. Fitted on the 48 (or 192) cached training videos it
  memorised them and answered held-out videos at chance; on the stream nothing can be memorised.
- **Few frames first.** The answer position must learn to attend to the few image tokens
  that show the event among ~150 prompt tokens; with 4 frames (one of them the event's) the fit
  sat at chance for 2,000+ steps, with 1 frame (the event's) it reached 0.90 held-out in 250.
  So k grows over the fit (``K_SCHEDULE``: 1, then 4, then 8 frames, the answer-bearing ones
  among them), and the fitted teacher is measured on 16 frames, what the selector gives it.

The options: a letter names the same answer in every question when the task lists options in
its vocabulary's order (the demo's tasks do). A teacher fitted on reshuffled options has not
learned to match option texts to frames on this machine's budget (chance after 2,500 steps,
with 2 options first or 5; RESULTS.md), so ``shuffle_options`` stays an experiment.
``teacher_accuracy`` measures a fitted teacher on held-out questions shown chosen frames
(e.g. ``oracle_indices``: the answer-bearing ones).
"""

from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

__all__ = ["fit_teacher", "teacher_accuracy", "permuted", "render_frames", "frames_at", "K_SCHEDULE"]

K_SCHEDULE: tuple[tuple[int, float], ...] = ((1, 0.2), (4, 0.5), (8, 1.0))
"""(k, until): k frames per question until that fraction of the fit's steps."""

def permuted(options, answer_index: int, rng: random.Random) -> tuple[list[str], int]:
    """``options`` in a random order from ``rng`` and the index of the answer among them."""
    order = list(range(len(options)))
    rng.shuffle(order)
    return [options[i] for i in order], order.index(answer_index)


def frames_at(step: int, steps: int, schedule: Sequence[tuple[int, float]] = K_SCHEDULE) -> int:
    """Frames per question at ``step`` of ``steps`` under ``schedule``."""
    for k, until in schedule:
        if step < until * steps:
            return k
    return schedule[-1][0]


def render_frames(item, k: int, rng: random.Random, longest: int | None, quality: int):
    """The frames the teacher is shown for ``item`` (a ``TaskItem``): one frame inside each
    answer-bearing event, one inside each distractor event with probability 1/2 while there is
    room, the rest event-free, in time order; each through the cache's JPEG encoding
    (``teacher_jpeg``). Returns (uint8 [k', 3, H, W], times in seconds), k' = max(k, events needed)."""
    from hfs.pipeline.demo.task import video_fill
    from hfs.pipeline.extract.video import teacher_jpeg
    from hfs.pipeline.model.frames import decode_jpegs

    spec = item.video
    width, height = spec.size
    picked = [rng.randrange(spec.events[e].start_frame, spec.events[e].end_frame) for e in item.answer_events]
    for e, event in enumerate(spec.events):
        if e not in item.answer_events and len(picked) < k and rng.random() < 0.5:
            picked.append(rng.randrange(event.start_frame, event.end_frame))
    busy = {i for event in spec.events for i in range(event.start_frame, event.end_frame)}
    quiet = [i for i in range(spec.n_frames) if i not in busy]
    indices = sorted(picked + rng.sample(quiet, max(0, k - len(picked))))
    fill = video_fill(spec)
    jpegs = [teacher_jpeg(fill(i, height, width), longest or max(width, height), quality) for i in indices]
    return decode_jpegs(jpegs), [i / spec.fps for i in indices]


def fit_teacher(
    config,
    out_dir: str | Path,
    kind: str = "qwen2_5_vl",
    steps: int = 2000,
    batch_size: int = 16,
    lr: float = 1e-3,
    warmup: int = 100,
    schedule: Sequence[tuple[int, float]] = K_SCHEDULE,
    seed: int = 0,
    frame_longest: int | None = 448,
    jpeg_quality: int = 90,
    progress=None,
) -> Path:
    """Fit the tiny ``kind`` teacher (every weight, vision tower included) to answer questions of
    the task ``config`` (a ``TaskConfig``) drawn afresh at every step from seed ``seed``; save it
    as a model folder (usable as ``--teacher``) in ``out_dir`` and return it.

    Each step: ``batch_size`` new items, each shown ``frames_at(step)`` frames (``render_frames``:
    the answer-bearing events among them), options as the task lists them, or reshuffled per
    step when ``config.shuffle_options``; the letter CE at the answer position. AdamW at ``lr``
    after ``warmup`` steps of linear warm-up, gradients clipped to norm 1. ``frame_longest`` and
    ``jpeg_quality``: the cache's teacher frames (``ExtractConfig``). ``progress(n)`` is called
    after each step. Deterministic from ``seed``.
    """
    import torch

    from hfs.pipeline.demo.task import plan_item
    from hfs.pipeline.model.teachers import load_teacher
    from hfs.pipeline.model.teachers.base import letter_token_ids

    out_dir = Path(out_dir)
    rng = random.Random(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = load_teacher(kind, f"tiny-{kind}", lora_r=0)
        model = teacher.hf_model
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup)))
        letters = torch.tensor(letter_token_ids(teacher.tokenizer, config.n_options))
        drawn = 0
        for step in range(steps):
            items = [plan_item("train", drawn + j, seed, config) for j in range(batch_size)]
            drawn += batch_size
            k = frames_at(step, steps, schedule)
            shown = [render_frames(item, k, rng, frame_longest, jpeg_quality) for item in items]
            asked = [permuted(list(it.options), it.answer_index, rng) if config.shuffle_options
                     else (list(it.options), it.answer_index) for it in items]
            encoded = teacher.encode_batch([f for f, _ in shown], [it.question for it in items],
                                           [o for o, _ in asked], [t for _, t in shown])
            inputs, vision = teacher.collate(encoded)
            # the plain transformers forward: unlike Teacher.forward, it trains the vision tower too
            logits = model(**inputs, **vision).logits
            ends = torch.tensor([e.prompt_len - 1 for e in encoded])
            z = logits[torch.arange(len(items)), ends][:, letters]
            loss = torch.nn.functional.cross_entropy(z, torch.tensor([a for _, a in asked]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            if step % 100 == 0:
                log.debug("teacher fit step %d: k %d, CE %.3f", step, k, float(loss.detach()))
            if progress is not None:
                progress(1)
    model.eval()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tmp = out_dir.with_name(out_dir.name + ".partial")  # a killed fit leaves no half-saved teacher under out_dir
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    teacher.processor.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    log.info("fitted the tiny %s teacher for %d steps → %s", kind, steps, out_dir)
    return out_dir


def teacher_accuracy(teacher_dir: str | Path, cache, samples: Sequence, select, kind: str = "qwen2_5_vl",
                     batch_size: int = 8, shuffles: int = 0, seed: int = 0) -> dict:
    """Accuracy of the teacher saved in ``teacher_dir`` on ``samples`` (``QASample``s in ``cache``),
    each shown the frames ``select(sample) -> grid indices`` picks, through ``Teacher.forward``
    (what ``hfs evaluate`` asks).

    ``shuffles``: also ask each question that many more times with its options in a random
    order (from ``seed``). Returns {"questions", "accuracy" (as listed), "accuracy_shuffled"
    (over the shuffled asks, None without), "predictions": [{sample_id, options, answer, predicted}]}.
    """
    import torch

    from hfs.pipeline.model.frames import decode_jpegs
    from hfs.pipeline.model.teachers import load_teacher

    rng = random.Random(seed)
    teacher = load_teacher(kind, str(teacher_dir), lora_r=0)
    teacher.hf_model.eval()
    asks = []  # (sample, options, answer index, shuffled)
    for s in samples:
        asks.append((s, list(s.options), s.answer_index, False))
        for _ in range(shuffles):
            asks.append((s, *permuted(list(s.options), s.answer_index, rng), True))
    predictions = []
    with torch.no_grad():
        for start in range(0, len(asks), batch_size):
            chunk = asks[start:start + batch_size]
            frames, times = [], []
            for s, *_ in chunk:
                indices = sorted(select(s))
                stamps = cache.timestamps(s.video_id)
                frames.append(decode_jpegs(cache.frames(s.video_id, indices)))
                times.append([float(stamps[i]) for i in indices])
            gates = torch.ones(len(chunk), len(frames[0]))
            out = teacher.forward(frames, gates, [s.question for s, *_ in chunk], [o for _, o, _, _ in chunk], times)
            for (s, o, a, shuffled), row in zip(chunk, out.option_logits):
                predictions.append({"sample_id": s.sample_id, "options": o, "answer": a,
                                    "predicted": int(row.argmax()), "shuffled": shuffled})

    def share(rows):
        return sum(r["answer"] == r["predicted"] for r in rows) / len(rows) if rows else None

    return {"questions": len(samples), "accuracy": share([r for r in predictions if not r["shuffled"]]),
            "accuracy_shuffled": share([r for r in predictions if r["shuffled"]]), "predictions": predictions}
