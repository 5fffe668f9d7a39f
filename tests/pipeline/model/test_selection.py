"""Gumbel-TopK (Eq. 10), plain top-k, and the greedy set selector ("hfs-set")."""

from __future__ import annotations

import math

import pytest
import torch

from hfs.pipeline.model.schedules import gumbel_tau
from hfs.pipeline.model.selection import (
    SelectionConfig,
    gumbel_noise,
    gumbel_topk,
    relaxed_topk,
    topk_select,
)
from hfs.pipeline.model.set_objective import SetObjectiveConfig, greedy_set_selection, set_objective

T = torch.tensor


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def scores(B=8, N=128, seed=0):
    return torch.rand(B, N, generator=torch.Generator().manual_seed(seed)).clamp(0.01, 0.99)


# ---------------------------------------------------------------- the relaxation, by hand


def test_lml_relaxation_by_hand():
    # N = 2, k = 1: σ(2−ν) + σ(0−ν) = 1 ⇒ ν = 1 (σ(x) + σ(−x) = 1) ⇒ m = (σ(1), σ(−1)) = (0.731059, 0.268941)
    assert torch.allclose(relaxed_topk(T([[2.0, 0.0]]), 1, 1.0, "lml"), T([[0.731059, 0.268941]]), atol=1e-6)
    # Keys (3, 1, −1, −3), k = 2: symmetric about 0 ⇒ ν = 0.
    # τ = 1: (σ(3), σ(1), σ(−1), σ(−3)) = (0.952574, 0.731059, 0.268941, 0.047426), sum 2.
    keys = T([[3.0, 1.0, -1.0, -3.0]])
    assert torch.allclose(relaxed_topk(keys, 2, 1.0, "lml"), T([[0.952574, 0.731059, 0.268941, 0.047426]]), atol=1e-6)
    # τ = 2: (σ(1.5), σ(0.5), σ(−0.5), σ(−1.5)) = (0.817574, 0.622459, 0.377541, 0.182426)
    assert torch.allclose(relaxed_topk(keys, 2, 2.0, "lml"), T([[0.817574, 0.622459, 0.377541, 0.182426]]), atol=1e-6)
    # τ = 0.01: well-separated keys give the hard mask (1 − σ(100) ≈ 4e-44).
    assert torch.allclose(relaxed_topk(keys, 2, 0.01, "lml"), T([[1.0, 1.0, 0.0, 0.0]]), atol=1e-6)
    # k = N: everything is selected.
    assert torch.equal(relaxed_topk(keys, 4, 1.0, "lml"), torch.ones(1, 4))


def test_lml_implicit_gradient_by_hand():
    # N = 2, k = 1, τ = 1: m_1 = σ((a − b)/2) exactly ⇒ ∂m_1/∂a = σ'(1)/2 = 0.731059·0.268941/2 = 0.098306,
    # ∂m_1/∂b = −0.098306 (ν moves with the keys: ∂ν/∂a = ∂ν/∂b = 1/2).
    keys = T([[2.0, 0.0]], requires_grad=True)
    relaxed_topk(keys, 1, 1.0, "lml")[0, 0].backward()
    assert torch.allclose(keys.grad, T([[0.098306, -0.098306]]), atol=1e-6)
    # Against central differences on a random case (float64); torch's gradcheck would import sympy (slow).
    x = torch.randn(1, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    eps = 1e-6
    numeric = torch.stack(
        [(relaxed_topk(x + eps * e, 3, 0.7, "lml") - relaxed_topk(x - eps * e, 3, 0.7, "lml"))[0] / (2 * eps) for e in torch.eye(6).unsqueeze(1)]
    )  # numeric[j, i] = ∂m_i/∂x_j
    xr = x.clone().requires_grad_()
    analytic = torch.stack([torch.autograd.grad(relaxed_topk(xr, 3, 0.7, "lml")[0, i], xr)[0][0] for i in range(6)], dim=1)
    assert torch.allclose(analytic, numeric, atol=1e-6)
    assert torch.allclose(analytic.sum(1), torch.zeros(6, dtype=torch.float64), atol=1e-9)  # Σ m stays k


def test_successive_softmax_by_hand_and_its_bound_violation():
    # Xie & Ermon 2019. Keys (ln 3, 0), τ = 1. Step 1: softmax = (3/4, 1/4).
    keys = T([[math.log(3.0), 0.0]])
    assert torch.allclose(relaxed_topk(keys, 1, 1.0, "successive_softmax"), T([[0.75, 0.25]]), atol=1e-6)
    # Step 2: α = (ln 3 + ln 1/4, 0 + ln 3/4) = (ln 3/4, ln 3/4) ⇒ (1/2, 1/2). m = (1.25, 0.75):
    # Σ m = k holds but m_1 > 1, the reason "lml" is offered as an option.
    assert torch.allclose(relaxed_topk(keys, 2, 1.0, "successive_softmax"), T([[1.25, 0.75]]), atol=1e-6)


# ---------------------------------------------------------------- Gumbel-TopK (Eq. 10)


@pytest.mark.parametrize("relaxation", ["lml", "successive_softmax"])
@pytest.mark.parametrize("tau", [2.0, 0.5, 0.01])
def test_gumbel_topk_invariants(tau, relaxation):
    s = scores()
    out = gumbel_topk(s, 16, tau, generator=torch.Generator().manual_seed(1), relaxation=relaxation)
    assert out.indices.shape == (8, 16) and out.indices.dtype == torch.long
    for row in out.indices.tolist():
        assert len(set(row)) == 16 and row == sorted(row) and 0 <= row[0] and row[-1] < 128
    assert torch.equal(out.hard.sum(-1), torch.full((8,), 16.0))
    assert torch.equal(out.hard.nonzero()[:, 1].view(8, 16), out.indices)  # hard mask = S
    assert torch.allclose(out.soft.sum(-1), torch.full((8,), 16.0), atol=1e-4)
    assert out.soft.min() >= 0.0
    if relaxation == "lml":
        assert out.soft.max() <= 1.0


def test_gumbel_topk_keys_are_log_s_plus_gumbel():
    s = scores()
    out = gumbel_topk(s, 16, 1.0, generator=torch.Generator().manual_seed(3))
    keys = torch.log(s) + gumbel_noise(s.shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.indices, keys.topk(16, -1).indices.sort(-1).values)


def test_gumbel_top1_samples_proportional_to_s():
    # Gumbel-max: P(argmax_i log s_i + g_i = j) = s_j / Σ s. s = (0.2, 0.6, 0.2) ⇒ P(1) = 0.6;
    # 5000 draws: standard error √(0.6·0.4/5000) = 0.0069, tolerance 0.035 ≈ 5 s.e.
    # (Uniform selection would give 1/3, 8 s.e. outside.)
    s = T([[0.2, 0.6, 0.2]]).expand(5000, 3)
    idx = gumbel_topk(s, 1, 1.0, generator=torch.Generator().manual_seed(0)).indices[:, 0]
    freq = torch.bincount(idx, minlength=3).float() / 5000
    assert torch.allclose(freq, T([0.2, 0.6, 0.2]), atol=0.035)


@pytest.mark.parametrize("relaxation,low_tau", [("lml", 0.01), ("successive_softmax", 0.001)])
def test_gumbel_topk_low_tau_approaches_hard(relaxation, low_tau):
    # successive softmax converges more slowly: at τ = 0.01 one frame near the boundary can
    # still hold ≈ 2 of the mass and its neighbour ≈ 0 (mean gap 0.016); at τ = 0.001, 0.0026.
    s = scores()
    gap = []
    for tau in (2.0, 0.5, low_tau):
        out = gumbel_topk(s, 16, tau, generator=torch.Generator().manual_seed(1), relaxation=relaxation)
        gap.append((out.soft - out.hard.detach()).abs().mean().item())
    assert gap[0] > gap[1] > gap[2] and gap[2] < 0.01


def test_gumbel_topk_gradients_soft_and_straight_through():
    s = scores().requires_grad_()
    w = torch.randn(8, 128, generator=torch.Generator().manual_seed(9))  # Σ m = k is constant, so weight it
    out = gumbel_topk(s, 16, 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.hard.detach(), out.hard.detach().round())  # forward values stay exactly 0/1
    (g_soft,) = torch.autograd.grad((out.soft * w).sum(), s, retain_graph=True)
    (g_hard,) = torch.autograd.grad((out.hard * w).sum(), s)
    assert g_soft.abs().sum() > 0 and torch.isfinite(g_soft).all()
    assert torch.allclose(g_hard, g_soft)  # straight-through: hard carries the soft mask's gradient
    plain = gumbel_topk(s, 16, 0.5, generator=torch.Generator().manual_seed(1), hard=False)
    assert not plain.hard.requires_grad and plain.soft.requires_grad


def test_gumbel_topk_reproducible_and_rows_independent():
    s = scores()
    a = gumbel_topk(s, 16, 1.0, generator=torch.Generator().manual_seed(5))
    b = gumbel_topk(s, 16, 1.0, generator=torch.Generator().manual_seed(5))
    c = gumbel_topk(s, 16, 1.0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.indices, b.indices) and torch.equal(a.soft, b.soft)
    assert not torch.equal(a.indices, c.indices)
    # Changing row 0 changes nothing in the other rows (same noise).
    s2 = s.clone()
    s2[0] = s2[0].flip(0)
    d = gumbel_topk(s2, 16, 1.0, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(d.indices[0], a.indices[0])
    assert torch.equal(d.indices[1:], a.indices[1:]) and torch.equal(d.soft[1:], a.soft[1:])
    # And no gradient crosses rows.
    x = s.clone().requires_grad_()
    out = gumbel_topk(x, 16, 1.0, generator=torch.Generator().manual_seed(5))
    (g,) = torch.autograd.grad((out.soft[1] * torch.arange(128.0)).sum(), x)
    assert (g[0] == 0).all() and (g[2:] == 0).all() and g[1].abs().sum() > 0


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
def test_a_cpu_generator_gives_the_same_selection_on_every_device(device):
    # torch refuses a CPU generator for a CUDA draw; the noise is drawn on the
    # generator's device and moved, so one seed selects the same frames anywhere.
    noise = gumbel_noise((2, 5), generator=torch.Generator().manual_seed(1), device=device)
    assert noise.device.type == device
    assert torch.equal(noise.cpu(), gumbel_noise((2, 5), generator=torch.Generator().manual_seed(1)))
    s = scores(B=2)
    here = gumbel_topk(s.to(device), 16, 1.0, generator=torch.Generator().manual_seed(5))
    ref = gumbel_topk(s, 16, 1.0, generator=torch.Generator().manual_seed(5))
    assert here.indices.device.type == device
    assert torch.equal(here.indices.cpu(), ref.indices)
    assert torch.allclose(here.soft.cpu(), ref.soft, atol=1e-5)


def test_gumbel_topk_validation_and_config():
    s = scores(B=2, N=10)
    for k in (0, 11):
        with pytest.raises(ValueError, match="k"):
            gumbel_topk(s, k, 1.0)
    with pytest.raises(ValueError, match="relaxation"):
        gumbel_topk(s, 2, 1.0, relaxation="sinkhorn")
    cfg = SelectionConfig()
    assert (cfg.k, cfg.tau0, cfg.tau_decay, cfg.tau_min, cfg.straight_through) == (16, 2.0, 0.999, 0.5, True)
    assert cfg.tau(0) == 2.0 and cfg.tau(500) == gumbel_tau(500) and cfg.tau(5000) == 0.5
    with pytest.raises(ValueError):
        SelectionConfig(relaxation="sinkhorn")


def test_topk_select():
    s = T([[0.1, 0.9, 0.3, 0.8], [0.7, 0.2, 0.6, 0.1]])
    assert topk_select(s, 2).tolist() == [[1, 3], [0, 2]]  # ascending, not by score
    assert topk_select(s[0], 3).tolist() == [1, 2, 3]
    with pytest.raises(ValueError):
        topk_select(s, 5)


# ---------------------------------------------------------------- greedy F maximisation ("hfs-set")

# Two near-duplicate good frames (0, 1 at t = 0, 1) and a good frame far away (4 at t = 80).
S6 = T([[0.9, 0.95, 0.2, 0.1, 0.85, 0.8]])
T6 = T([0.0, 1.0, 40.0, 41.0, 80.0, 81.0])


def test_greedy_picks_diverse_set_by_hand():
    # Step 1 (m = 0): no redundancy, gains grow with s_i ⇒ frame 1 (s = 0.95).
    # Step 2 (m = e_1), gain = 0.5·s_i + 0.3·2·[ln(4 + e^0.475 + e^{s_i/2}) − ln(5 + e^0.475)] − 0.2·2·K(t_i, 1):
    #   frame 0: 0.45 + 0.6·(ln 7.176326 − ln 6.608014) − 0.4·e^{−1/200}  = 0.45 + 0.049503 − 0.398005 = 0.101498
    #   frame 4: 0.425 + 0.6·(ln 7.137604 − ln 6.608014) − 0.4·e^{−6241/200} = 0.425 + 0.046256 − 0     = 0.471256
    #   frame 5: 0.4 + 0.043073 − 0 = 0.443073 ⇒ frame 4.
    assert greedy_set_selection(S6, T6, 2).tolist() == [[1, 4]]
    assert topk_select(S6, 2).tolist() == [[0, 1]]  # plain top-k takes the duplicate
    # Without the redundancy term (Table 5 row rel+cov) greedy is top-k.
    assert greedy_set_selection(S6, T6, 2, SetObjectiveConfig(terms=("rel", "cov"))).tolist() == [[0, 1]]
    out = greedy_set_selection(S6, T6, 4)
    assert out.shape == (1, 4) and len(set(out[0].tolist())) == 4
    assert greedy_set_selection(S6, T6, 0).shape == (1, 0)
    with pytest.raises(ValueError):
        greedy_set_selection(S6, T6, 7)


@pytest.mark.parametrize("shared_t", [True, False])
def test_greedy_gains_match_brute_force(shared_t):
    # The closed-form marginal gains must agree with re-evaluating F (Eq. 15) on every candidate mask.
    g = torch.Generator().manual_seed(0)
    B, N, k = 3, 10, 5
    s = torch.rand(B, N, generator=g)
    t = torch.rand(N, generator=g) * 30 if shared_t else torch.rand(B, N, generator=g) * 30
    cfg = SetObjectiveConfig(gamma=5.0)
    m = torch.zeros(B, N)
    for _ in range(k):
        best = []
        for b in range(B):
            tb = t if shared_t else t[b]
            f0 = set_objective(s[b : b + 1], m[b : b + 1], tb, cfg.weights, cfg.tau_c, cfg.gamma)
            gains = []
            for i in range(N):
                if m[b, i] == 1:
                    gains.append(-math.inf)
                    continue
                mi = m[b : b + 1].clone()
                mi[0, i] = 1.0
                gains.append((set_objective(s[b : b + 1], mi, tb, cfg.weights, cfg.tau_c, cfg.gamma) - f0).item())
            best.append(max(range(N), key=gains.__getitem__))
        m[torch.arange(B), T(best)] = 1.0
    expected = m.nonzero()[:, 1].view(B, k)
    assert torch.equal(greedy_set_selection(s, t, k, cfg), expected)
