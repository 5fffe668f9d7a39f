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

Score path (DESIGN.md "Interpretations"; ``SelectionConfig.score_path``): what the keys are
made of, given the scorer's logits z ``[B, N]`` (float32, outside autocast):

* ``"logit"`` (default): key_i = c·ẑ_i + g_i, ẑ = (z − mean z)/std z over the N frames of
  the video, c = ``logit_scale``. This is Gumbel-top-k on logits (Kool et al. 2019) with
  sampling temperature τ_s = 1/c: S is a Plackett–Luce sample of softmax(c·ẑ). The scale is
  held: a shared offset or a global rescaling of z changes nothing, so the selector cannot
  saturate. F uses u_i = σ(c·ẑ_i); the KL softmax(u_S/τ_d) (``losses.kl_on``).
* ``"sigmoid"`` (paper, Eq. 9–10): key_i = log σ(z_i) + g_i (``logsigmoid``, exact for any
  z), i.e. sampling ∝ s_i; F and the KL use s_i = σ(z_i).

τ (2.0 → 0.5) is the relaxation temperature of the soft mask on either path: it shapes m
and its gradient, never which frames are sampled. Inference ranks by the noise-free keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from hfs.pipeline.model.schedules import gumbel_tau

__all__ = [
    "RELAXATIONS",
    "SCORE_PATHS",
    "ESTIMATORS",
    "standardized_logits",
    "selection_keys",
    "frame_scores",
    "gumbel_topk_keys",
    "plackett_luce_log_prob",
    "SelectionConfig",
    "GumbelTopK",
    "gumbel_noise",
    "per_sample_noise",
    "relaxed_topk",
    "gumbel_topk",
    "topk_select",
]

RELAXATIONS = ("lml", "successive_softmax")
SCORE_PATHS = ("logit", "sigmoid")
ESTIMATORS = ("straight_through", "score_function")
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
        score_path: "logit" (default): keys c·ẑ + g on the per-video standardised logits,
            F and the KL on σ(c·ẑ); "sigmoid" (paper): keys log σ(z) + g, F and KL on
            s = σ(z). See the module docstring. Runs saved without this field load as
            "sigmoid" (``model.read_saved_config``).
        logit_scale: c of the "logit" path: the keys' standard deviation over a video's
            frames, i.e. 1/τ_s of the Gumbel-top-k sample. Ignored by "sigmoid".
        estimator: gradient of the answer CE w.r.t. the scores. "score_function" (default,
            measured in benchmarks/RESULTS.md 2026-12-07): ``samples`` Gumbel-top-k samples
            per question, teacher gates 1.0, REINFORCE on the ordered Plackett–Luce
            log-probability of each sample with its CE as cost and the mean CE of the other
            samples as baseline; the teacher runs ``samples`` times per question.
            "straight_through" (paper's reading): one sample, the teacher's frames gated by
            hard + soft − soft.detach() (∂CE/∂gate measures scaling a frame's tokens, not
            including it). Runs saved without this field load as "straight_through".
        samples: samples per question for "score_function" (≥ 2: the baseline is
            leave-one-out); the teacher runs ``samples`` times per question.
    """

    k: int = 16
    tau0: float = 2.0
    tau_decay: float = 0.999
    tau_min: float = 0.5
    straight_through: bool = True
    relaxation: Literal["lml", "successive_softmax"] = "lml"
    score_path: Literal["logit", "sigmoid"] = "logit"
    logit_scale: float = 2.0
    estimator: Literal["straight_through", "score_function"] = "score_function"
    samples: int = 4

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {self.relaxation!r}")
        if self.score_path not in SCORE_PATHS:
            raise ValueError(f"score_path must be one of {SCORE_PATHS}, got {self.score_path!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {self.logit_scale}")
        if self.estimator == "score_function" and self.samples < 2:
            raise ValueError(f"estimator 'score_function' needs samples >= 2 (leave-one-out baseline), got {self.samples}")

    @property
    def num_samples(self) -> int:
        """Gumbel-top-k samples per question in training: 1 for straight-through."""
        return self.samples if self.estimator == "score_function" else 1

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


def per_sample_noise(seeds, n: int, device: torch.device | str | None = None, samples: int = 1) -> Tensor:
    """Gumbel noise ``[B, n]`` whose row b is drawn from a generator seeded with ``seeds[b]``;
    ``[B, samples, n]`` for ``samples > 1`` (sample 0 is the ``[B, n]`` draw).

    Training seeds each sample by (run seed, epoch, its place in the epoch's order), so a
    sample gets the same noise whatever micro-batch, process or resume it lands in: the
    noise needs no state in a checkpoint, and N processes draw what one process with N×
    the accumulation draws.
    """
    shape = (n,) if samples == 1 else (samples, n)
    rows = [gumbel_noise(shape, generator=torch.Generator().manual_seed(int(seed))) for seed in seeds]
    return torch.stack(rows).to(device) if rows else torch.empty(0, *shape, device=device)


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


def standardized_logits(z: Tensor, scale: float = 1.0, eps: float = 1e-6) -> Tensor:
    """c·(z − mean z)/std z over the last dim (the N frames of a video): ``[..., N]``.

    Unchanged by adding a constant to, or (up to ``eps``) rescaling, every z_i of a video;
    the result has mean 0 and standard deviation c. float32 or float64 in, same out.
    """
    mean = z.mean(-1, keepdim=True)
    var = z.var(-1, unbiased=False, keepdim=True)
    return scale * (z - mean) * torch.rsqrt(var + eps)


def selection_keys(z: Tensor, score_path: str = "logit", scale: float = 2.0) -> Tensor:
    """Noise-free keys of Eq. 10 from the scorer's logits ``z [B, N]`` (float32).

    "logit": c·ẑ (``standardized_logits``); "sigmoid": log s_i = log σ(z_i) (paper), as
    ``logsigmoid``, finite with a non-zero gradient for any z. Training adds Gumbel noise
    to these keys; inference ranks by them.
    """
    if score_path == "logit":
        return standardized_logits(z.float(), scale)
    if score_path == "sigmoid":
        return F.logsigmoid(z.float())
    raise ValueError(f"score_path must be one of {SCORE_PATHS}, got {score_path!r}")


def frame_scores(keys: Tensor, score_path: str = "logit") -> Tensor:
    """Per-frame scores in (0, 1) that F (Eqs. 11–15) and the hfs-set selector use.

    "logit": u_i = σ(key_i) = σ(c·ẑ_i), unchanged by a shared offset of the logits;
    "sigmoid": s_i = exp(log σ(z_i)) = σ(z_i), Eq. 9.
    """
    if score_path == "logit":
        return torch.sigmoid(keys)
    if score_path == "sigmoid":
        return keys.exp()
    raise ValueError(f"score_path must be one of {SCORE_PATHS}, got {score_path!r}")


def gumbel_topk_keys(
    keys: Tensor,
    k: int,
    tau: float,
    generator: torch.Generator | None = None,
    hard: bool = True,
    relaxation: str = "lml",
    noise: Tensor | None = None,
) -> GumbelTopK:
    """Eq. 10 on noise-free keys ``[B, N]`` (``selection_keys``): perturbed keys key_i + g_i.

    g is Gumbel noise drawn from ``generator`` (a seeded generator reproduces the draw) or
    given as ``noise [B, N]``, e.g. drawn per sample so a sample's noise does not depend on
    its batch. S = the k largest perturbed keys (exactly k distinct frames, a Plackett–Luce
    sample of softmax(keys) without replacement); soft = ``relaxed_topk(perturbed, k, τ)``.
    With ``hard=True`` the returned hard mask is straight-through, hard + (soft −
    soft.detach()): 0/1 values, gradient of soft. With ``hard=False`` it is the plain 0/1
    mask (no gradient). Rows are independent.
    """
    if keys.dim() != 2:
        raise ValueError(f"keys must be [B, N], got shape {tuple(keys.shape)}")
    _check_k(k, keys.shape[-1])
    work = keys if keys.dtype == torch.float64 else keys.float()
    if noise is not None:
        if noise.shape != keys.shape:
            raise ValueError(f"noise must have the shape of s {tuple(keys.shape)}, got {tuple(noise.shape)}")
        g = noise.to(keys.device, work.dtype)
    else:
        g = gumbel_noise(keys.shape, generator=generator, device=keys.device).to(work.dtype)
    perturbed = work + g
    soft = relaxed_topk(perturbed, k, tau, relaxation)
    indices = perturbed.detach().topk(k, dim=-1).indices.sort(dim=-1).values
    mask = torch.zeros_like(soft).scatter_(-1, indices, 1.0)
    if hard:
        # Parenthesised so the forward value is exactly 0/1: (h + x) − x can round.
        mask = mask + (soft - soft.detach())
    return GumbelTopK(soft.to(keys.dtype), mask.to(keys.dtype), indices)


def gumbel_topk(
    s: Tensor,
    k: int,
    tau: float,
    generator: torch.Generator | None = None,
    hard: bool = True,
    relaxation: str = "lml",
    noise: Tensor | None = None,
) -> GumbelTopK:
    """Eq. 10 as the paper writes it, for scores ``s [B, N]`` in (0, 1): keys log s_i + g_i.

    s is clamped at 1e-8 before the log (the gradient is 0 below it); the model works on
    logits instead (``selection_keys`` + ``gumbel_topk_keys``). Otherwise as
    ``gumbel_topk_keys``.
    """
    if s.dim() != 2:
        raise ValueError(f"s must be [B, N], got shape {tuple(s.shape)}")
    work = s if s.dtype == torch.float64 else s.float()
    out = gumbel_topk_keys(torch.log(work.clamp(_S_MIN, 1.0)), k, tau, generator, hard, relaxation, noise)
    return GumbelTopK(out.soft.to(s.dtype), out.hard.to(s.dtype), out.indices)


def plackett_luce_log_prob(keys: Tensor, order: Tensor) -> Tensor:
    """log P(order) of an ordered sample without replacement under Plackett–Luce(softmax(keys)).

    ``keys [B, N]`` noise-free keys (log-weights), ``order [B, k]`` frame indices in the order
    they were drawn (for Gumbel-top-k: by decreasing perturbed key) → ``[B]``:
    Σ_j [key_{o_j} − log Σ_{i ∉ {o_1..o_{j−1}}} exp(key_i)]. The ordered (not the unordered
    set's) log-probability: exact for the drawn order and O(k·N).
    """
    if keys.dim() != 2 or order.dim() != 2 or order.shape[0] != keys.shape[0]:
        raise ValueError(f"need keys [B, N] and order [B, k], got {tuple(keys.shape)} and {tuple(order.shape)}")
    B, k = order.shape
    picked = keys.gather(1, order)  # [B, k]
    taken = torch.zeros(B, k, keys.shape[1], dtype=torch.bool, device=keys.device)
    # step j excludes o_1..o_{j−1}: a strictly lower-triangular scatter of the order
    earlier = torch.ones(k, k, dtype=torch.bool, device=keys.device).tril(-1)  # [j, j'] = j' < j
    taken.scatter_(2, order.unsqueeze(1).expand(B, k, k), earlier.unsqueeze(0).expand(B, k, k))
    rest = keys.unsqueeze(1).expand(B, k, -1).masked_fill(taken, float("-inf"))
    return (picked - torch.logsumexp(rest, dim=-1)).sum(-1)


def topk_select(s: Tensor, k: int) -> Tensor:
    """Inference selection: the k frames with the largest s_i (paper) or noise-free keys.

    ``s [..., N]`` → indices ``[..., k]`` (long), ascending (time order).
    """
    _check_k(k, s.shape[-1])
    return s.detach().topk(k, dim=-1).indices.sort(dim=-1).values
