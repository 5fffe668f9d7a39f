"""Selectors that need no model: ``uniform`` and ``random``."""

from __future__ import annotations

import hashlib

import numpy as np

from hfs.pipeline.evaluation.selectors import Choice, Query, SelectorContext, register_selector


def uniform_indices(n: int, k: int) -> list[int]:
    """k of n grid frames at segment centres: ⌊(i + ½)·n/k⌋ for i = 0..k−1 (128, 16 → 4, 12, …, 124)."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    return [((2 * i + 1) * n) // (2 * k) for i in range(k)]


@register_selector("uniform")
def uniform(query: Query, ctx: SelectorContext) -> Choice:
    """The k segment centres of the N-frame grid, whatever the question."""
    return Choice(uniform_indices(len(query.features), ctx.k))


def _question_seed(seed: int, sample_id: str) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{sample_id}".encode()).digest()[:8], "little")


@register_selector("random")
def random(query: Query, ctx: SelectorContext) -> Choice:
    """k distinct frames drawn at random: a floor. Seeded by (seed, question id), so a question
    gets the same frames in every run and process."""
    rng = np.random.default_rng(_question_seed(ctx.seed, query.sample_id))
    return Choice(sorted(int(i) for i in rng.choice(len(query.features), size=ctx.k, replace=False)))
