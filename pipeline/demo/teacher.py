"""The stand-in teacher of `hfs demo`: the tiny teacher fitted to read the synthetic frames.

The paper's teacher is a pretrained video LLM: shown the right frames, it answers. The tiny
random teacher of the ``tiny`` preset cannot, and a selector trained against a teacher that
cannot answer learns nothing from its answers (measured: the answer CE stays at chance and
hfs stays at uniform's event recall). So the demo first fits the tiny teacher, vision tower
included, on the training split with answer-bearing frames among its k frames
(``fit_teacher``): a stand-in for pretraining, done once, before HFS training starts. HFS
training then never sees the ground truth; it learns from the teacher's answers alone.

Real benchmarks shuffle the options, so a teacher must read them: by default every step
shows each question's options in a fresh random order (the answer index follows), so a
letter means nothing by itself and only matching the option texts to the frames answers.
``teacher_accuracy`` measures a fitted teacher on held-out questions shown chosen frames
(e.g. ``oracle_indices``: the answer-bearing ones).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

__all__ = ["fit_teacher", "teacher_accuracy", "permuted"]


def permuted(options, answer_index: int, rng: random.Random) -> tuple[list[str], int]:
    """``options`` in a random order from ``rng`` and the index of the answer among them."""
    order = list(range(len(options)))
    rng.shuffle(order)
    return [options[i] for i in order], order.index(answer_index)


def fit_teacher(
    cache,
    samples: Sequence,
    truth: Mapping,
    out_dir: str | Path,
    kind: str = "qwen2_5_vl",
    steps: int = 600,
    k: int = 4,
    batch_size: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    shuffle_options: bool = True,
    progress=None,
) -> Path:
    """Fit the tiny ``kind`` teacher (every weight, vision tower included) to answer the
    training questions from k frames that include the answer-bearing ones; save it as a model
    folder (usable as ``--teacher``) in ``out_dir`` and return it.

    ``samples``: training ``QASample``s whose videos are in ``cache``; ``truth``: sample id →
    ``QuestionTruth`` (its ``grid_hits``). Each step draws ``batch_size`` questions and, for
    each, its answer-bearing grid frames plus random others up to k; ``shuffle_options``:
    its options in a fresh random order (augmentation; False keeps the manifest's order).
    ``progress(n)`` is called after each step. Deterministic from ``seed``.
    """
    import torch

    from hfs.pipeline.model.frames import decode_jpegs
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
        n_options = max(len(s.options) for s in samples)
        letters = torch.tensor(letter_token_ids(teacher.tokenizer, n_options))
        for step in range(steps):
            batch = rng.sample(list(samples), min(batch_size, len(samples)))
            frames, times = [], []
            for s in batch:
                n = len(cache.timestamps(s.video_id))
                hits = list(truth[s.sample_id].grid_hits)[:k]
                others = [i for i in range(n) if i not in hits]
                indices = sorted(hits + rng.sample(others, k - len(hits)))
                frames.append(decode_jpegs(cache.frames(s.video_id, indices)))
                stamps = cache.timestamps(s.video_id)
                times.append([float(stamps[i]) for i in indices])
            options, answers = [], []
            for s in batch:
                o, a = permuted(list(s.options), s.answer_index, rng) if shuffle_options else (list(s.options),
                                                                                              s.answer_index)
                options.append(o)
                answers.append(a)
            encoded = teacher.encode_batch(frames, [s.question for s in batch], options, times)
            inputs, vision = teacher.collate(encoded)
            # the plain transformers forward: unlike Teacher.forward, it trains the vision tower too
            logits = model(**inputs, **vision).logits
            answer_positions = torch.tensor([e.prompt_len - 1 for e in encoded])
            z = logits[torch.arange(len(batch)), answer_positions][:, letters]
            loss = torch.nn.functional.cross_entropy(z, torch.tensor(answers))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if progress is not None:
                progress(1)
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model.save_pretrained(out_dir)
    teacher.processor.save_pretrained(out_dir)
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
