"""Frame selectors: one function each, found by name in a registry (timm style).

A selector is a function ``fn(query, ctx) -> Choice``: from one question and its cached
frames (``Query``: the N CLIP features and timestamps of the video, the question and its
options) to k distinct frame indices on the N-frame grid, ascending (time order), and
the per-frame scores it ranked by when it has any. ``ctx`` (``SelectorContext``) holds k
and what some selectors share across questions, built on first use: the trained model of
a run (``hfs``, ``hfs-set``) and the cache's CLIP (``clip``). Adding one is a function and
the decorator::

    @register_selector("middle")
    def middle(query, ctx):
        n = len(query.features)
        return Choice(list(range((n - ctx.k) // 2, (n + ctx.k) // 2)))

A selector whose model scores several questions per forward pass (``hfs``, ``hfs-set``) also
registers ``fn_batch(queries, ctx) -> list[Choice]`` with ``@register_batch("name")``;
``select_batch`` uses it, and calls ``fn`` once per question for the others. A batched form
makes the choices ``fn`` makes one question at a time, up to float rounding.

The built-in ones: ``uniform`` (segment centres), ``random`` (a seeded floor), ``clip``
(cosine between the question's CLIP text embedding and the cached frame features),
``hfs`` (a trained run: the k largest s_i, the paper's inference), ``hfs-set`` (greedy
maximisation of F (Eq. 15) with a hard mask, our extension), ``oracle`` (a synthetic task's
answer-bearing frames from its ground truth, filled with segment centres: a ceiling, not a
selector one could deploy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "Query",
    "Choice",
    "SelectorContext",
    "SelectorError",
    "register_selector",
    "list_selectors",
    "get_selector",
    "register_batch",
    "select_batch",
    "selector_needs_run",
    "check_choice",
]


class SelectorError(ValueError):
    """A selector that cannot run as asked (unknown name, no run, another encoder); says why."""


@dataclass
class Query:
    """One question over one video's cached frames.

    features: Φ_v(V_i), the cached CLIP embeddings ``[N, D]`` (float16, before normalisation).
    timestamps: the N frames' times in seconds ``[N]``.
    """

    sample_id: str
    question: str
    options: list[str]
    features: np.ndarray
    timestamps: np.ndarray


@dataclass
class Choice:
    """What a selector chose: ``indices`` (k distinct, ascending, on the N-frame grid) and
    ``scores``, the N per-frame values it ranked by (None for selectors without any)."""

    indices: list[int]
    scores: list[float] | None = None


SelectorFn = Callable[[Query, "SelectorContext"], Choice]
BatchSelectorFn = Callable[[list[Query], "SelectorContext"], list[Choice]]


@dataclass(frozen=True)
class _Entry:
    fn: SelectorFn
    needs_run: bool


_REGISTRY: dict[str, _Entry] = {}
_BATCH: dict[str, BatchSelectorFn] = {}


def register_selector(name: str, needs_run: bool = False):
    """Decorator: make ``fn(query, ctx) -> Choice`` the selector ``name``. ``needs_run``:
    it needs a trained run (``--run``)."""

    def register(fn: SelectorFn) -> SelectorFn:
        if name in _REGISTRY:
            raise ValueError(f"selector {name!r} is already registered")
        _REGISTRY[name] = _Entry(fn, needs_run)
        return fn

    return register


def register_batch(name: str):
    """Decorator: make ``fn_batch(queries, ctx) -> list[Choice]`` the batched form of the
    registered selector ``name`` (its one-question form's choices up to float rounding, faster)."""

    def register(fn_batch: BatchSelectorFn) -> BatchSelectorFn:
        if name not in _REGISTRY:
            raise ValueError(f"register selector {name!r} before its batched form")
        _BATCH[name] = fn_batch
        return fn_batch

    return register


def select_batch(name: str, queries: list[Query], ctx: "SelectorContext") -> list[Choice]:
    """The checked choices of selector ``name`` for ``queries``: one call of its batched form
    when it has one, else one call per question."""
    fn = get_selector(name)
    batch_fn = _BATCH.get(name)
    choices = batch_fn(list(queries), ctx) if batch_fn is not None and queries else [fn(q, ctx) for q in queries]
    if len(choices) != len(queries):
        raise SelectorError(f"{name} returned {len(choices)} choices for {len(queries)} questions")
    return [check_choice(c, len(q.features), ctx.k, name) for c, q in zip(choices, queries)]


def list_selectors() -> list[str]:
    """Registered selector names, in registration order."""
    _load_builtins()
    return list(_REGISTRY)


def get_selector(name: str) -> SelectorFn:
    """The selector registered as ``name``; ``SelectorError`` naming the known ones otherwise."""
    _load_builtins()
    if name not in _REGISTRY:
        raise SelectorError(f"unknown selector {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name].fn


def selector_needs_run(name: str) -> bool:
    """Whether selector ``name`` needs a trained run."""
    get_selector(name)
    return _REGISTRY[name].needs_run


def _load_builtins() -> None:
    from hfs.pipeline.evaluation.selectors import basic, clip, learned, oracle  # noqa: F401  (registers them)


def check_choice(choice: Choice, n: int, k: int, name: str = "selector") -> Choice:
    """Raise ``SelectorError`` unless ``choice`` holds k distinct ascending indices in [0, n)."""
    idx = list(choice.indices)
    if len(idx) != k or len(set(idx)) != k or idx != sorted(idx) or (idx and not (0 <= idx[0] and idx[-1] < n)):
        raise SelectorError(f"{name} returned {idx}; expected {k} distinct ascending indices in [0, {n})")
    if choice.scores is not None and len(choice.scores) != n:
        raise SelectorError(f"{name} returned {len(choice.scores)} scores for {n} frames")
    return choice


@dataclass
class SelectorContext:
    """What selectors share across questions.

    k: frames to select. seed: the ``random`` selector's seed. run: a trained run (folder,
    checkpoint or saved model) for ``hfs`` / ``hfs-set``. cache_config: the feature cache's
    config (which CLIP made the features, for ``clip``). device: where models run. truth: a
    synthetic task's ground truth, for ``oracle``.
    """

    k: int = 16
    seed: int = 0
    run: str | Path | None = None
    cache_config: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    cache: Any = None  # a FeatureCache, for the clip selector's encoder check
    truth: Any = None  # a ground_truth.jsonl path or sample_id -> QuestionTruth, for ``oracle``

    @cached_property
    def ground_truth(self) -> dict:
        """sample_id → ``QuestionTruth`` (``truth`` read once)."""
        if self.truth is None:
            raise SelectorError("the oracle selector needs a task's ground truth (ground_truth.jsonl)")
        if isinstance(self.truth, (str, Path)):
            from hfs.pipeline.evaluation.recall import read_ground_truth

            return read_ground_truth(self.truth)
        return dict(self.truth)

    @cached_property
    def model(self):
        """The run's ``HFSModel`` (student, teacher, heads), in eval mode."""
        if self.run is None:
            raise SelectorError("the hfs selectors need a trained run: pass --run runs/NAME")
        from hfs.pipeline.model.hfs_model import HFSModel
        from hfs.pipeline.train.checkpoint import run_model_dir

        model = HFSModel.load(run_model_dir(self.run), device=self.device).eval()
        clip_dim = self.cache_config.get("embed_dim")
        if clip_dim is not None and int(clip_dim) != model.cfg.student.clip_dim:
            raise SelectorError(f"the run's student reads {model.cfg.student.clip_dim}-d features, the cache holds "
                                f"{clip_dim}-d ones (encoder {self.cache_config.get('model')!r})")
        return model

    @cached_property
    def clip(self):
        """The CLIP model that made the cache's features (checked against them)."""
        from hfs.pipeline.evaluation.selectors.clip import load_cache_clip

        return load_cache_clip(self.cache_config, self.cache, self.device)
