"""Holistic set objective F(m) of HFS (paper §3.3, Eqs. 11–15) and the greedy "hfs-set" selector.

Shapes: scores ``s`` (s_i = σ(MLP_s(·)) ∈ [0, 1], Eq. 9) and mask ``m`` (soft mask of
Eq. 10, or a hard 0/1 mask) are ``[B, N]``; frame times ``t`` are ``[N]`` (shared by the
batch) or ``[B, N]``. Every term returns ``[B]``, one value per question.

Times ``t_i`` are the frame's index on the N-frame grid by default (γ = 10 frames), or
seconds (γ = 10 s); see ``SetObjectiveConfig.time_unit`` and ``kernel_times``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Sequence

import torch
from torch import Tensor

__all__ = [
    "TERMS",
    "SetObjectiveConfig",
    "SetObjectiveTerms",
    "relevance",
    "coverage",
    "temporal_kernel",
    "redundancy",
    "set_objective_terms",
    "set_objective",
    "kernel_times",
    "greedy_set_selection",
]

TERMS = ("rel", "cov", "red")
"""Names of the three terms of F (Eq. 15): relevance, coverage, redundancy."""


@dataclass
class SetObjectiveConfig:
    """Hyper-parameters of the set objective F(m) (Eq. 15; paper §4.1 defaults).

    Attributes:
        weights: (λ_rel, λ_cov, λ_red) of Eq. 15. Paper: (0.5, 0.3, 0.2); Table 6 varies them.
        tau_c: temperature τ_c of the log-sum-exp coverage term (Eq. 12). Paper: 2.0.
        gamma: bandwidth γ of the temporal kernel (Eq. 13), in ``time_unit``. Paper: 10.0.
        time_unit: what t_i in Eq. 13 is: "frames" = the frame's index 0..N−1 on the
            sampled grid (default; the paper leaves it open), "seconds" = its timestamp.
        terms: which terms of F are switched on (Table 5 ablation); a term that is off
            contributes 0. Any subset of ("rel", "cov", "red").
    """

    weights: tuple[float, float, float] = (0.5, 0.3, 0.2)
    tau_c: float = 2.0
    gamma: float = 10.0
    time_unit: Literal["frames", "seconds"] = "frames"
    terms: tuple[str, ...] = TERMS

    def __post_init__(self) -> None:
        self.weights = tuple(float(w) for w in self.weights)  # YAML gives lists
        self.terms = tuple(self.terms)
        if len(self.weights) != 3:
            raise ValueError(f"weights must be (rel, cov, red), got {self.weights}")
        _check_terms(self.terms)
        if self.tau_c <= 0 or self.gamma <= 0:
            raise ValueError(f"tau_c and gamma must be > 0, got {self.tau_c}, {self.gamma}")
        if self.time_unit not in ("frames", "seconds"):
            raise ValueError(f"time_unit must be 'frames' or 'seconds', got {self.time_unit!r}")


class SetObjectiveTerms(NamedTuple):
    """The unweighted terms of Eq. 15 and F itself, each ``[B]``; a disabled term is 0."""

    relevance: Tensor
    coverage: Tensor
    redundancy: Tensor
    f: Tensor


def _check_terms(terms: Sequence[str]) -> None:
    unknown = [x for x in terms if x not in TERMS]
    if unknown:
        raise ValueError(f"unknown set-objective terms {unknown}; known: {list(TERMS)}")


def _check_sm(s: Tensor, m: Tensor) -> None:
    if s.shape != m.shape:
        raise ValueError(f"s and m must have the same shape, got {tuple(s.shape)} and {tuple(m.shape)}")


def relevance(s: Tensor, m: Tensor) -> Tensor:
    """Eq. 11: Rel(m) = Σ_i s_i · m_i. ``s, m [B, N]`` → ``[B]``."""
    _check_sm(s, m)
    return (s * m).sum(-1)


def coverage(s: Tensor, m: Tensor, tau_c: float = 2.0) -> Tensor:
    """Eq. 12: Cov(m) = τ_c · log Σ_i exp(s_i · m_i / τ_c). ``s, m [B, N]`` → ``[B]``.

    Computed with ``logsumexp`` (max subtracted), so it never overflows. Note that every
    frame contributes, an unselected one with exp(0) = 1.
    """
    _check_sm(s, m)
    return tau_c * torch.logsumexp(s * m / tau_c, dim=-1)


def temporal_kernel(t: Tensor, gamma: float = 10.0) -> Tensor:
    """Eq. 13: K(t_i, t_j) = exp(−(t_i − t_j)² / (2γ²)).

    ``t [N]`` → ``[N, N]``; ``t [B, N]`` → ``[B, N, N]``. ``t`` and ``γ`` in the same unit.
    """
    d = t.unsqueeze(-1) - t.unsqueeze(-2)
    return torch.exp(-(d * d) / (2.0 * gamma * gamma))


def _offdiag(kernel: Tensor) -> Tensor:
    n = kernel.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=kernel.device)
    return kernel.masked_fill(eye, 0.0)


def redundancy(m: Tensor, t: Tensor, gamma: float = 10.0) -> Tensor:
    """Eq. 14: Red(m) = Σ_i Σ_{j≠i} m_i · m_j · K(t_i, t_j). ``m [B, N]``, ``t [N] | [B, N]`` → ``[B]``.

    Each unordered pair counts twice (the sum runs over ordered pairs i ≠ j).
    """
    if t.shape[-1] != m.shape[-1]:
        raise ValueError(f"t has {t.shape[-1]} frames, m has {m.shape[-1]}")
    k_off = _offdiag(temporal_kernel(t.to(m.dtype), gamma))  # [N, N] or [B, N, N]
    km = (k_off @ m.unsqueeze(-1)).squeeze(-1)  # (K m)_i, [B, N]
    return (m * km).sum(-1)


def set_objective_terms(
    s: Tensor,
    m: Tensor,
    t: Tensor,
    weights: Sequence[float] = (0.5, 0.3, 0.2),
    tau_c: float = 2.0,
    gamma: float = 10.0,
    terms: Sequence[str] = TERMS,
) -> SetObjectiveTerms:
    """Eqs. 11–15: Rel, Cov, Red and F = λ_rel·Rel + λ_cov·Cov − λ_red·Red, each ``[B]``.

    ``terms`` switches terms on (Table 5); a term that is off is 0 and is not computed.
    """
    _check_sm(s, m)
    _check_terms(terms)
    w_rel, w_cov, w_red = weights
    zero = (s * m).sum(-1) * 0.0  # keeps shape, dtype, device (and the graph)
    rel = relevance(s, m) if "rel" in terms else zero
    cov = coverage(s, m, tau_c) if "cov" in terms else zero
    red = redundancy(m, t, gamma) if "red" in terms else zero
    return SetObjectiveTerms(rel, cov, red, w_rel * rel + w_cov * cov - w_red * red)


def set_objective(
    s: Tensor,
    m: Tensor,
    t: Tensor,
    weights: Sequence[float] = (0.5, 0.3, 0.2),
    tau_c: float = 2.0,
    gamma: float = 10.0,
    terms: Sequence[str] = TERMS,
) -> Tensor:
    """Eq. 15: F(m) = λ_rel·Rel(m) + λ_cov·Cov(m) − λ_red·Red(m). ``s, m [B, N]`` → ``[B]``."""
    return set_objective_terms(s, m, t, weights, tau_c, gamma, terms).f


def kernel_times(timestamps_s: Tensor, unit: Literal["frames", "seconds"] = "frames") -> Tensor:
    """Times t_i for Eq. 13 from the frames' timestamps ``[B, N]`` (or ``[N]``), in seconds.

    "frames": t_i = i, the index on the sampled grid (0..N−1), whatever the timestamps;
    "seconds": t_i = the timestamp. Returns float32 of the input's shape.
    """
    if unit == "frames":
        n = timestamps_s.shape[-1]
        grid = torch.arange(n, dtype=torch.float32, device=timestamps_s.device)
        return grid.expand(timestamps_s.shape).clone()
    if unit == "seconds":
        return timestamps_s.to(torch.float32)
    raise ValueError(f"unit must be 'frames' or 'seconds', got {unit!r}")


@torch.no_grad()
def greedy_set_selection(
    s: Tensor, t: Tensor, k: int, cfg: SetObjectiveConfig | None = None
) -> Tensor:
    """The "hfs-set" selector: greedy maximisation of F (Eq. 15) over hard 0/1 masks.

    Starting from the empty set, adds k frames one at a time, each time the frame with
    the largest marginal gain F(m + e_i) − F(m) (ties: lowest index). The gains of all
    candidates are computed at once, in closed form, for unselected i (m_i = 0):
      Rel: s_i;   Red: 2·Σ_{j≠i} K_ij m_j;
      Cov: τ_c·[log(Σ_j exp(v_j) − 1 + exp(s_i/τ_c)) − log Σ_j exp(v_j)], v_j = s_j m_j/τ_c.
    ``s [B, N]``, ``t [N] | [B, N]`` (already in ``cfg.time_unit``, see ``kernel_times``)
    → indices ``[B, k]`` (long, ascending). An extra selector; inference uses plain top-k.
    """
    cfg = cfg or SetObjectiveConfig()
    if s.dim() != 2:
        raise ValueError(f"s must be [B, N], got shape {tuple(s.shape)}")
    B, N = s.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= N:
        raise ValueError(f"k must be an int in [0, N={N}], got {k!r}")
    if t.shape[-1] != N or t.dim() > 2 or (t.dim() == 2 and t.shape[0] != B):
        raise ValueError(f"t must be [N={N}] or [B={B}, N={N}], got shape {tuple(t.shape)}")
    w_rel, w_cov, w_red = cfg.weights
    s = s.float()
    m = torch.zeros_like(s)
    taken = torch.zeros(B, N, dtype=torch.bool, device=s.device)
    k_off = _offdiag(temporal_kernel(t.float(), cfg.gamma)) if "red" in cfg.terms else None
    eye = torch.eye(N, dtype=torch.bool, device=s.device)
    rows = torch.arange(B, device=s.device)
    for _ in range(k):
        gain = torch.zeros_like(s)
        if "rel" in cfg.terms:
            gain = gain + w_rel * s
        if "cov" in cfg.terms:
            v = s * m / cfg.tau_c
            # Row i of v_cand is v with v_i replaced by s_i/τ_c: the mask with frame i added.
            v_cand = torch.where(eye, (s / cfg.tau_c).unsqueeze(1), v.unsqueeze(1))  # [B, N, N]
            lse_new = torch.logsumexp(v_cand, dim=-1)
            gain = gain + w_cov * cfg.tau_c * (lse_new - torch.logsumexp(v, dim=-1, keepdim=True))
        if k_off is not None:
            km = (k_off @ m.unsqueeze(-1)).squeeze(-1)
            gain = gain - w_red * 2.0 * km
        best = gain.masked_fill(taken, float("-inf")).argmax(dim=-1)
        taken[rows, best] = True
        m[rows, best] = 1.0
    idx = taken.nonzero()[:, 1].view(B, k)  # row-major, so ascending within each row
    return idx
