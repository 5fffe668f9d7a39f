"""The stand-in teacher of `hfs demo`: the tiny teacher fitted to read the synthetic frames.

The paper's teacher is a pretrained video LLM: shown the right frames, it answers. The tiny
random teacher of the ``tiny`` preset cannot, and a selector trained against a teacher that
cannot answer learns nothing from its answers (measured: the answer CE stays at chance and
hfs stays at uniform's event recall). So the demo first fits the tiny teacher, vision tower
included (``fit_teacher``): a stand-in for pretraining, done once, before HFS training starts.
HFS training then never sees the ground truth; it learns from the teacher's answers alone.

`fit_teacher` fits on the task's training questions, their cached frames (the single-event demo,
`stages/demo.TEACHER_FIT`: 4 frames with the answer-bearing ones among them), on a stream of new
videos of the task's generator (never a training or test video; frames rendered from the spec,
k growing along `K_SCHEDULE`; the query-aware demo: k = 2, a quarter shown no evidence), or on a mix. The student learns from how much lower the teacher's
answer CE is with the event among the frames than without, on the training videos: the fit on
those videos made the best critic measured, the stream fit reads held-out videos better
(benchmarks/RESULTS.md, 2026-12-07). Real benchmarks shuffle the options, so by default the
fitted teacher answers by the option's *text* (``answer_scoring="option_text"``, saved in its
folder): the tiny model does not learn to map what it saw to the letter of a shuffled option,
and does learn to name it. ``teacher_accuracy`` measures a fitted teacher on held-out questions
shown chosen frames (e.g. ``oracle_indices``: the answer-bearing ones).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)

__all__ = ["fit_teacher", "teacher_accuracy", "permuted", "render_item", "k_at", "K_SCHEDULE"]


def permuted(options, answer_index: int, rng: random.Random) -> tuple[list[str], int]:
    """``options`` in a random order from ``rng`` and the index of the answer among them."""
    order = list(range(len(options)))
    rng.shuffle(order)
    return [options[i] for i in order], order.index(answer_index)


K_SCHEDULE: tuple[tuple[int, float], ...] = ((1, 0.25), (4, 0.5), (8, 0.75), (16, 1.0))
"""Frames per fitting question: (k, until this fraction of the steps). One frame first, so the
model learns what the frames show before it must find the event among more frames (fitted on
k = 4 from the first step, the tiny teacher stays at chance for thousands of steps:
benchmarks/RESULTS.md)."""

FIT_SEED_OFFSET = 7919
"""The fitting stream's items come from task seed + this, so they are never a training or test video."""


def k_at(schedule: Sequence[tuple[int, float]], step: int, steps: int) -> int:
    """k of ``schedule`` at ``step`` of ``steps``: the first entry whose fraction ``step / steps`` is below."""
    for k, until in schedule:
        if step < until * steps:
            return k
    return schedule[-1][0]


def render_item(item, k: int, rng: random.Random, jpeg_quality: int = 90, evidence: bool = True):
    """``k`` frames of a task item, as Stage 1 would keep them, and their times in seconds:
    one frame inside each answer-bearing event (none with ``evidence=False``), one inside each
    other event with probability 1/2 (so a query-aware question is fitted with distractors in
    view), the rest from frames no event shows; rendered from the video's spec (no video
    encode), JPEG round-tripped at ``jpeg_quality`` as the cache stores frames. Returns (uint8
    [k', 3, H, W], times), k' = max(k, answer-bearing events)."""
    import numpy as np
    import torch
    from torchvision.io import decode_jpeg, encode_jpeg

    from hfs.pipeline.demo.task import video_fill

    spec = item.video
    width, height = spec.size
    inside = lambda event: rng.randrange(event.start_frame, event.end_frame)  # noqa: E731
    picked = [inside(spec.events[e]) for e in item.answer_events] if evidence else []
    others = [e for i, e in enumerate(spec.events) if i not in item.answer_events]
    picked = list(dict.fromkeys(picked))  # a pair's two shapes share their frames
    for event in others:
        if len(picked) < k and rng.random() < 0.5 and (frame := inside(event)) not in picked:
            picked.append(frame)
    k = max(k, len(item.answer_events))
    busy = {i for e in spec.events for i in range(e.start_frame, e.end_frame)}
    quiet = [i for i in range(spec.n_frames) if i not in busy and i not in picked]
    indices = sorted(picked + rng.sample(quiet, max(0, k - len(picked))))
    fill = video_fill(spec)
    frames = []
    for i in indices:
        frame = torch.from_numpy(np.ascontiguousarray(fill(i, height, width))).permute(2, 0, 1)
        frames.append(decode_jpeg(encode_jpeg(frame, quality=jpeg_quality)))
    return torch.stack(frames), [i / spec.fps for i in indices]


def _cached_frames(cache, sample, truth, k: int, rng: random.Random, evidence: bool = True):
    """``k`` cached frames of a training question (decoded) and their times: one grid frame inside
    each answer-bearing event (those with one), then their other grid frames while k allows (none
    of them with ``evidence=False``), the rest other grid frames, in time order."""
    from hfs.pipeline.model.frames import decode_jpegs

    stamps = cache.timestamps(sample.video_id)
    bearing = {i for e in truth.events for i in e.grid_hits}
    picked = []
    if evidence:  # one frame of each event, then the events' other grid frames while k allows
        picked = list(dict.fromkeys(rng.choice(e.grid_hits) for e in truth.events if e.grid_hits))[:k]
        picked += sorted(bearing - set(picked))[: k - len(picked)]
    others = [i for i in range(len(stamps)) if i not in bearing]
    indices = sorted(picked + rng.sample(others, k - len(picked)))
    return decode_jpegs(cache.frames(sample.video_id, indices)), [float(stamps[i]) for i in indices]


def fit_loss(option_logits, answers: Sequence[int], evidence: Sequence[bool]):
    """Mean over questions of the CE against the answer where the evidence was shown, against the
    uniform distribution over the question's options where it was not (options padded with -inf
    are left out)."""
    import torch

    logp = option_logits.log_softmax(dim=-1)
    valid = torch.isfinite(option_logits)
    target = torch.zeros_like(logp)
    for b, (answer, shown) in enumerate(zip(answers, evidence)):
        if shown:
            target[b, answer] = 1.0
        else:
            target[b, valid[b]] = 1.0 / int(valid[b].sum())
    return -(target * logp.masked_fill(~valid, 0.0)).sum(dim=-1).mean()


def fit_teacher(
    config,
    out_dir: str | Path,
    kind: str = "qwen2_5_vl",
    steps: int = 1500,
    batch_size: int = 16,
    lr: float = 1e-3,
    warmup: int = 100,
    grad_clip: float | None = 1.0,
    k_schedule: Sequence[tuple[int, float]] = K_SCHEDULE,
    answer_scoring: str = "option_text",
    seed: int = 0,
    progress=None,
    training=None,
    training_share: float = 0.5,
    no_evidence_share: float = 0.0,
) -> Path:
    """Fit the tiny ``kind`` teacher (every weight, vision tower included) to answer questions of the
    task ``config`` (a ``TaskConfig``) from frames that include the answer-bearing ones; save it as a
    model folder (usable as ``--teacher``) in ``out_dir`` and return it.

    The questions are a stream: every one of the ``steps`` × ``batch_size`` is a new video of the
    task's generator (seed ``seed + FIT_SEED_OFFSET``, so none is a training or test video),
    rendered as `render_item` says, with ``k_schedule``'s frame counts; the options are listed in
    the generator's order (shuffled when ``config.shuffle_options``). ``answer_scoring``: how the
    saved teacher answers (`hfs.pipeline.model.teachers.base.ANSWER_SCORINGS`; written into the
    folder). AdamW with a linear warm-up of ``warmup`` steps and gradients clipped at norm
    ``grad_clip`` (None: not clipped).
    ``progress(n)`` is called after each step. Deterministic from ``seed``.

    ``training``: (cache, samples, truth), the task's training questions (``QASample``s whose videos
    are in the ``FeatureCache``, and sample id → ``QuestionTruth``): ``training_share`` of every
    batch is drawn from them instead, their cached frames one per answer-bearing event plus random
    others up to k. HFS trains the teacher on the training questions too (θ3, Eq. 17); here that
    makes the fixed critic answer the videos the student learns from.

    ``no_evidence_share``: that share of the questions (drawn per question) are shown no
    answer-bearing frame and fitted to the uniform distribution over their options: shown no
    evidence, the critic must not know. Otherwise a teacher that has seen a training video
    answers it from its background alone, and a selection that finds the event earns no lower
    CE than one that misses it (the student's only signal). Off by default: on the single-event
    task, with a teacher that misread the event half the time, it made an inverted critic
    (benchmarks/RESULTS.md, 2026-12-07: recall 0.00); the query-aware demo fits a quarter so
    (2026-12-08: without it the teacher answers a distractor pair's colour with confidence, CE
    11.4, and the student learns to avoid every event).
    """
    import torch

    from hfs.pipeline.demo.task import plan_item
    from hfs.pipeline.model.teachers import load_teacher
    from hfs.pipeline.model.teachers.base import ANSWER_SCORINGS, write_teacher_settings

    if answer_scoring not in ANSWER_SCORINGS:
        raise ValueError(f"answer_scoring must be one of {ANSWER_SCORINGS}, got {answer_scoring!r}")
    if not 0.0 <= training_share <= 1.0:
        raise ValueError(f"training_share must be in [0, 1], got {training_share}")
    out_dir = Path(out_dir)
    rng = random.Random(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        teacher = load_teacher(kind, f"tiny-{kind}", lora_r=0)
        teacher.answer_scoring = answer_scoring
        teacher.train_vision = True  # pretraining's stand-in fits every weight, the vision tower too
        model = teacher.hf_model
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup)))
        cache, train_samples, train_truth = training if training is not None else (None, [], {})
        train_samples = list(train_samples)
        n_training = round(batch_size * training_share) if training is not None else 0
        for step in range(steps):
            items = [plan_item("train", step * batch_size + j, seed + FIT_SEED_OFFSET, config)
                     for j in range(batch_size - n_training)]
            seen = rng.sample(train_samples, min(n_training, len(train_samples)))
            k = max(k_at(k_schedule, step, steps), *(len(it.answer_events) for it in items),
                    *(len(train_truth[s.sample_id].events) for s in seen))
            evidence = [rng.random() >= no_evidence_share for _ in range(len(items) + len(seen))]
            shown = [render_item(item, k, rng, evidence=e) for item, e in zip(items, evidence)]
            shown += [_cached_frames(cache, s, train_truth[s.sample_id], k, rng, evidence=e)
                      for s, e in zip(seen, evidence[len(items):])]
            frames = [f for f, _ in shown]
            questions = [it.question for it in items] + [s.question for s in seen]
            options = [list(it.options) for it in items] + [list(s.options) for s in seen]
            answers = [it.answer_index for it in items] + [s.answer_index for s in seen]
            # the teacher's own forward, the one that answers in training and evaluation
            z = teacher(frames, torch.ones(len(frames), k), questions, options, [t for _, t in shown]).option_logits
            loss = fit_loss(z, answers, evidence)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            schedule.step()
            if progress is not None:
                progress(1)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(out_dir)
    teacher.processor.save_pretrained(out_dir)
    write_teacher_settings(out_dir, answer_scoring)
    log.info("fitted the tiny %s teacher for %d steps (answers by %s) → %s", kind, steps, answer_scoring, out_dir)
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
