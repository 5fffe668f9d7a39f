"""The stand-in teacher of `hfs demo`: the tiny teacher fitted to read the synthetic frames.

The paper's teacher is a pretrained video LLM: shown the right frames, it answers. The tiny
random teacher of the ``tiny`` preset cannot, and a selector trained against a teacher that
cannot answer learns nothing from its answers (measured: the answer CE stays at chance and
hfs stays at uniform's event recall). So the demo first fits the tiny teacher, vision tower
included, on the training split with answer-bearing frames among its k frames
(``fit_teacher``): a stand-in for pretraining, done once, before HFS training starts. HFS
training then never sees the ground truth; it learns from the teacher's answers alone.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

__all__ = ["fit_teacher"]


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
    progress=None,
) -> Path:
    """Fit the tiny ``kind`` teacher (every weight, vision tower included) to answer the
    training questions from k frames that include the answer-bearing ones; save it as a model
    folder (usable as ``--teacher``) in ``out_dir`` and return it.

    ``samples``: training ``QASample``s whose videos are in ``cache``; ``truth``: sample id →
    ``QuestionTruth`` (its ``grid_hits``). Each step draws ``batch_size`` questions and, for
    each, its answer-bearing grid frames plus random others up to k. ``progress(n)`` is
    called after each step. Deterministic from ``seed``.
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
            encoded = teacher.encode_batch(frames, [s.question for s in batch], [list(s.options) for s in batch], times)
            inputs, vision = teacher.collate(encoded)
            # the plain transformers forward: unlike Teacher.forward, it trains the vision tower too
            logits = model(**inputs, **vision).logits
            answer_positions = torch.tensor([e.prompt_len - 1 for e in encoded])
            z = logits[torch.arange(len(batch)), answer_positions][:, letters]
            loss = torch.nn.functional.cross_entropy(z, torch.tensor([s.answer_index for s in batch]))
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
