"""Differentiable frame selection of HFS (paper §3.3, Eq. 10): Gumbel-TopK, and plain top-k.

Training: ``gumbel_topk(s, k, τ)`` perturbs the scores with Gumbel noise, takes the
exact top-k of the perturbed keys as the index set S (Gumbel-top-k trick: a sample of k
frames without replacement, with probabilities ∝ s_i), and relaxes the selection into a
soft mask m ∈ [0, 1]^N with Σ m = k, through which gradients reach s. Inference: plain
top-k of s (``topk_select``), no noise (paper).

Relaxation of the top-k mask (the paper does not say which; DESIGN.md "Interpretations"):

* ``"lml"`` (default): m_i = σ((key_i − ν)/τ), with ν such that Σ_i m_i = k. It is the
  Limited Multi-Label projection (Amos, Xu, Kolter, "The Limited Multi-Label Projection
  Layer", 2019): the maximiser of ⟨key, m⟩/τ + Σ_i H(m_i) over {0 ≤ m ≤ 1, Σ m = k},
  and the two-anchor case of the entropic-OT top-k (Xie et al., "Differentiable Top-k
  with Optimal Transport", NeurIPS 2020). Guarantees 0 < m_i < 1 and Σ m = k; tends to
  the hard top-k of the keys as τ → 0. ν is found by bisection; its gradient by the
  implicit function theorem (∂ν/∂key_j = σ'_j / Σ_l σ'_l), so Σ m stays k under any
  perturbation.
* ``"successive_softmax"`` (an option): m = Σ_{j=1..k} a^j, a^j = softmax(α^j/τ), α^1 = key,
  α^{j+1} = α^j + log(1 − a^j) (Xie & Ermon, "Reparameterizable Subset Sampling via
  Continuous Relaxations", IJCAI 2019; Plötz & Roth, "Neural Nearest Neighbors
  Networks", NeurIPS 2018). Σ m = k, but m_i is NOT bounded by 1: with N = 128, k = 16
  and τ ∈ [0.5, 2] most rows have some m_i > 1 (up to ≈ 4), because a frame whose
  weight dominates keeps part of every later step's mass, so F(m) would count one frame
  several times. The paper states m ∈ [0, 1]^N, which ``"lml"`` guarantees; that is why
  it is the default. ``SelectionConfig(relaxation="successive_softmax")`` switches back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from hfs.pipeline.model.schedules import gumbel_tau

__all__ = [
    "RELAXATIONS",
    "SelectionConfig",
    "GumbelTopK",
    "gumbel_noise",
    "per_sample_noise",
    "relaxed_topk",
    "gumbel_topk",
    "topk_select",
]

RELAXATIONS = ("lml", "successive_softmax")
_S_MIN = 1e-8  # s is clamped into [_S_MIN, 1] before the log, so log s ≥ −18.4


@dataclass
class SelectionConfig:
    """Frame selection (Eq. 10) and its temperature schedule (paper §4.1 defaults).

    Attributes:
        k: k_sel, the number of frames given to the teacher. Paper: 16 of N = 128.
        tau0: Gumbel-TopK temperature τ at step 0. Paper: 2.0.
        tau_decay: multiplicative decay of τ per optimiser step. Paper: 0.999.
        tau_min: floor of τ. Paper: 0.5.
        straight_through: teacher input uses hard + soft − soft.detach() (value 0/1,
            gradient of the soft mask), so the answer CE reaches the student. If False
            the hard mask carries no gradient.
        relaxation: soft top-k relaxation, "lml" (default: 0 < m_i < 1, Σ m = k, the
            paper's m ∈ [0, 1]^N) or "successive_softmax" (Σ m = k, but m_i reaches ≈ 3.4
            at τ = 1 with N = 128, k = 16); see the module docstring.
    """

    k: int = 16
    tau0: float = 2.0
    tau_decay: float = 0.999
    tau_min: float = 0.5
    straight_through: bool = True
    relaxation: Literal["lml", "successive_softmax"] = "lml"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {self.relaxation!r}")

    def tau(self, step: int) -> float:
        """τ at optimiser step ``step``: max(tau_min, tau0 · tau_decay^step)."""
        return gumbel_tau(step, self.tau0, self.tau_decay, self.tau_min)


class GumbelTopK(NamedTuple):
    """Result of Eq. 10 for ``s [B, N]``.

    soft: relaxed mask m ``[B, N]``, Σ m = k, 0 ≤ m ≤ 1 for "lml" (used by F(m), Eq. 15).
    hard: 0/1 mask of S ``[B, N]``; straight-through (gradient of ``soft``) if requested.
    indices: S ``[B, k]`` (long), ascending, i.e. in time order.
    """

    soft: Tensor
    hard: Tensor
    indices: Tensor


def _check_k(k: int, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, N={n}], got {k!r}")


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Standard Gumbel noise g = −log(−log u), u ~ U(0, 1), float32, from ``generator``, on ``device``.

    u is drawn on the generator's own device and then moved, so a CPU generator
    serves a CUDA model (torch refuses a CPU generator for a CUDA draw) and a
    seed gives the same noise on every device.
    """
    draw_on = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=draw_on, dtype=torch.float32).to(device)
    u = u.clamp(torch.finfo(torch.float32).tiny, 1.0 - 1e-7)  # no log 0 on either side
    return -torch.log(-torch.log(u))


def per_sample_noise(seeds, n: int, device: torch.device | str | None = None) -> Tensor:
    """Gumbel noise ``[B, n]`` whose row b is drawn from a generator seeded with ``seeds[b]``.

    Training seeds each sample by (run seed, epoch, its place in the epoch's order), so a
    sample gets the same noise whatever micro-batch, process or resume it lands in: the
    noise needs no state in a checkpoint, and N processes draw what one process with N×
    the accumulation draws.
    """
    rows = [gumbel_noise((n,), generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    return torch.stack(rows).to(device) if rows else torch.empty(0, n, device=device)


def _lml(keys: Tensor, k: int, tau: float, iters: int = 64) -> Tensor:
    x = keys.double() / tau  # [B, N]; float64 so that Σ m = k holds to ~1e-12 before the cast
    n = x.shape[-1]
    if k == n:
        return x * 0.0 + 1.0
    with torch.no_grad():
        xd = x.detach()
        # Σ σ(x − lo) > k and Σ σ(x − hi) < k, since σ(−L) < e^{−L} = 1/(e·N) for L = log N + 1.
        L = math.log(n) + 1.0
        lo = xd.min(-1, keepdim=True).values - L
        hi = xd.max(-1, keepdim=True).values + L
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            too_many = torch.sigmoid(xd - mid).sum(-1, keepdim=True) > k
            lo = torch.where(too_many, mid, lo)
            hi = torch.where(too_many, hi, mid)
        nu = 0.5 * (lo + hi)
        m0 = torch.sigmoid(xd - nu)
        ds = m0 * (1.0 - m0)  # σ'
        w = ds / ds.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    # Value ν, gradient ∂ν/∂x_j = w_j (implicit function theorem on Σ σ(x − ν) = k).
    nu = nu + (w * (x - xd)).sum(-1, keepdim=True)
    return torch.sigmoid(x - nu)


def _successive_softmax(keys: Tensor, k: int, tau: float) -> Tensor:
    alpha = keys
    m = torch.zeros_like(keys)
    tiny = torch.finfo(keys.dtype).tiny
    for _ in range(k):
        a = torch.softmax(alpha / tau, dim=-1)
        m = m + a
        alpha = alpha + torch.log((1.0 - a).clamp_min(tiny))
    return m


def relaxed_topk(keys: Tensor, k: int, tau: float, relaxation: str = "lml") -> Tensor:
    """Soft top-k mask of ``keys [B, N]`` at temperature τ → ``[B, N]`` with Σ = k.

    ``"lml"``: σ((key − ν)/τ) with Σ = k, 0 < m < 1 (module docstring). ``"successive_softmax"``:
    sum of k masked softmaxes (Xie & Ermon 2019), m_i ≥ 0 but possibly > 1.
    """
    if keys.dim() != 2:
        raise ValueError(f"keys must be [B, N], got shape {tuple(keys.shape)}")
    _check_k(k, keys.shape[-1])
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if relaxation == "lml":
        return _lml(keys, k, tau).to(keys.dtype)
    if relaxation == "successive_softmax":
        return _successive_softmax(keys, k, tau)
    raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {relaxation!r}")


def gumbel_topk(
    s: Tensor,
    k: int,
    tau: float,
    generator: torch.Generator | None = None,
    hard: bool = True,
    relaxation: str = "lml",
    noise: Tensor | None = None,
) -> GumbelTopK:
    """Eq. 10: m, S = Gumbel-TopK({s_i}, τ, k_sel) for scores ``s [B, N]`` in (0, 1).

    keys_i = log s_i + g_i (s clamped at 1e-8; g Gumbel noise drawn from ``generator``, so a
    seeded generator reproduces the draw, or given as ``noise [B, N]``, e.g. drawn per
    sample so a sample's noise does not depend on its batch); S = the k largest keys (exactly k distinct
    frames); soft = ``relaxed_topk(keys, k, τ)``. With ``hard=True`` the returned hard mask
    is straight-through, hard + (soft − soft.detach()): 0/1 values, gradient of soft.
    With ``hard=False`` it is the plain 0/1 mask (no gradient). Rows are independent.
    """
    if s.dim() != 2:
        raise ValueError(f"s must be [B, N], got shape {tuple(s.shape)}")
    _check_k(k, s.shape[-1])
    work = s if s.dtype == torch.float64 else s.float()
    if noise is not None:
        if noise.shape != s.shape:
            raise ValueError(f"noise must have the shape of s {tuple(s.shape)}, got {tuple(noise.shape)}")
        g = noise.to(s.device, work.dtype)
    else:
        g = gumbel_noise(s.shape, generator=generator, device=s.device).to(work.dtype)
    keys = torch.log(work.clamp(_S_MIN, 1.0)) + g
    soft = relaxed_topk(keys, k, tau, relaxation)
    indices = keys.detach().topk(k, dim=-1).indices.sort(dim=-1).values
    mask = torch.zeros_like(soft).scatter_(-1, indices, 1.0)
    if hard:
        # Parenthesised so the forward value is exactly 0/1: (h + x) − x can round.
        mask = mask + (soft - soft.detach())
    return GumbelTopK(soft.to(s.dtype), mask.to(s.dtype), indices)


def topk_select(s: Tensor, k: int) -> Tensor:
    """Inference selection (paper): the k frames with the largest s_i, no noise.

    ``s [..., N]`` → indices ``[..., k]`` (long), ascending (time order).
    """
    _check_k(k, s.shape[-1])
    return s.detach().topk(k, dim=-1).indices.sort(dim=-1).values
