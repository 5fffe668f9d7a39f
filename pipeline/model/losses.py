"""Losses of HFS: L_sep (Eq. 6), answer CE (Eq. 17), mutual-learning KL (Eqs. 19–20), total (Eq. 21).

Per-sample functions return ``[B]`` (no reduction over the batch); ``total_loss`` takes
the batch mean. ``LossTerms`` carries every term to ``metrics.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "separation_loss",
    "answer_ce",
    "student_distribution",
    "kl_teacher_student",
    "kl_from_logits",
    "total_loss",
    "LossTerms",
]

Term = Union[Tensor, float, None]


def separation_loss(q: Tensor) -> Tensor:
    """Eq. 6: L_sep = 2/(K(K−1)) · Σ_{i<j} cos(q_task^(i), q_task^(j))², the mean squared
    pairwise cosine of the K task queries.

    ``q [..., K, d]`` → ``[...]`` (no reduction over the batch). For K < 2 there is no
    pair and the loss is a differentiable 0 of shape ``[...]``. A zero vector has cosine
    0 with everything (norms are clamped at 1e-8).
    """
    if q.dim() < 2:
        raise ValueError(f"q must be [..., K, d], got shape {tuple(q.shape)}")
    K = q.shape[-2]
    if K < 2:
        return q.sum(dim=(-2, -1)) * 0.0
    qn = F.normalize(q, dim=-1, eps=1e-8)
    cos = qn @ qn.transpose(-1, -2)  # [..., K, K]
    upper = torch.ones(K, K, dtype=torch.bool, device=q.device).triu(diagonal=1)
    return (cos[..., upper] ** 2).sum(-1) * (2.0 / (K * (K - 1)))


def answer_ce(z: Tensor, y: Tensor) -> Tensor:
    """Eq. 17: L_CE = −Σ_c y_c · log softmax(z)_c with one-hot y, i.e. −log softmax(z)_y.

    ``z [B, C]`` teacher logits of the C option letters, ``y [B]`` (long) index of the
    correct option → ``[B]``.
    """
    if z.dim() != 2 or y.shape != z.shape[:1]:
        raise ValueError(f"need z [B, C] and y [B], got {tuple(z.shape)} and {tuple(y.shape)}")
    return F.cross_entropy(z, y.long(), reduction="none")


def student_distribution(s_sel: Tensor, tau_d: float = 0.5) -> Tensor:
    """Eq. 19: p_s = softmax({s_i / τ_d}_{i∈S}). ``s_sel [B, k]`` → ``[B, k]``, τ_d = 0.5."""
    if tau_d <= 0:
        raise ValueError(f"tau_d must be > 0, got {tau_d}")
    return torch.softmax(s_sel / tau_d, dim=-1)


def kl_teacher_student(p_t: Tensor, p_s: Tensor) -> Tensor:
    """Eq. 20: L_KL = Σ_i p_t,i · log(p_t,i / p_s,i) = KL(p_t ‖ p_s). ``[B, k]`` → ``[B]``.

    Gradients flow into both p_t (MLP_t) and p_s (MLP_s): mutual learning, nothing is
    detached. 0·log 0 = 0; p_s is clamped at 1e-12 inside the log. When the logits are at
    hand, prefer ``kl_from_logits`` (exact log-probabilities, no clamping).
    """
    if p_t.shape != p_s.shape:
        raise ValueError(f"p_t and p_s must have the same shape, got {tuple(p_t.shape)}, {tuple(p_s.shape)}")
    tiny = torch.finfo(p_s.dtype).tiny
    return (torch.xlogy(p_t, p_t) - p_t * torch.log(p_s.clamp_min(max(tiny, 1e-12)))).sum(-1)


def kl_from_logits(teacher_logits: Tensor, student_scores: Tensor, tau_d: float = 0.5) -> Tensor:
    """Eqs. 18–20 from logits: KL(softmax(teacher_logits) ‖ softmax(student_scores / τ_d)).

    ``teacher_logits [B, k]`` = MLP_t([H_t; h_con]) (Eq. 18), ``student_scores [B, k]`` =
    s_i of the selected frames, in the same order → ``[B]``. Log-probabilities come from
    ``log_softmax``, so nothing underflows. Gradients reach both inputs.
    """
    if teacher_logits.shape != student_scores.shape:
        raise ValueError(
            f"teacher_logits and student_scores must have the same shape, got "
            f"{tuple(teacher_logits.shape)}, {tuple(student_scores.shape)}"
        )
    if tau_d <= 0:
        raise ValueError(f"tau_d must be > 0, got {tau_d}")
    log_pt = torch.log_softmax(teacher_logits, dim=-1)
    log_ps = torch.log_softmax(student_scores / tau_d, dim=-1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(-1)


def _mean(x: Term) -> Tensor | float:
    return x.mean() if isinstance(x, Tensor) else float(x)


def total_loss(
    ce: Term,
    kl: Term,
    f: Term,
    sep: Term,
    lambda_kl: float,
    lambda_set: float,
    lambda_sep: float,
) -> Tensor:
    """Eq. 21: L = L_CE + λ_KL·L_KL − λ_set·F(m) + λ_sep·L_sep, averaged over the batch.

    Each term is ``[B]`` or a scalar (``ce`` must be a tensor). A term that is ``None``
    or whose λ is 0 is switched off (ablations) and left out entirely, so a non-finite
    value of a disabled term cannot reach the loss. Returns a scalar tensor.
    """
    if not isinstance(ce, Tensor):
        raise TypeError("ce must be a tensor (it carries the graph)")
    loss = _mean(ce)
    for sign, lam, term in ((1.0, lambda_kl, kl), (-1.0, lambda_set, f), (1.0, lambda_sep, sep)):
        if term is not None and lam != 0:
            loss = loss + sign * lam * _mean(term)
    return loss


def _to_mean(x: Term) -> Tensor | float | None:
    if x is None:
        return None
    if isinstance(x, Tensor):
        return x.detach().float().mean()
    return float(x)


def _to_float(x: Term) -> float | None:
    mean = _to_mean(x)
    return None if mean is None else float(mean)


@dataclass
class LossTerms:
    """Every term of Eq. 21 for one step, for logging (``as_dict`` → metrics.jsonl).

    Tensors may be ``[B]`` or scalars (logged as their batch mean); ``None`` is a term
    that is switched off. ``set_objective`` is F(m) (Eq. 15), ``relevance``, ``coverage``
    and ``redundancy`` its unweighted terms (Eqs. 11, 12, 14).
    """

    total: Term
    ce: Term
    kl: Term = None
    set_objective: Term = None
    relevance: Term = None
    coverage: Term = None
    redundancy: Term = None
    sep: Term = None
    lambda_kl: float = 0.0
    lambda_set: float = 0.0
    lambda_sep: float = 0.0

    def as_dict(self) -> dict[str, float | None]:
        """Python floats (batch means), detached; ``None`` for a term that is off."""
        return {f.name: _to_float(getattr(self, f.name)) for f in fields(self)}

    def as_tensors(self) -> dict[str, Tensor | float | None]:
        """``as_dict`` without leaving the device: each tensor term as its detached float32
        batch mean (0-d, where it was computed), the λs as floats, ``None`` for a term that is
        off. ``float()`` of each value is what ``as_dict`` gives, so a training loop can move
        every term of every micro-batch to the host in one transfer."""
        return {f.name: _to_mean(getattr(self, f.name)) for f in fields(self)}
