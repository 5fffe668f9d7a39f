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


# ---------------------------------------------------------------- the score path (logits → keys)


def test_standardized_logits_by_hand():
    # z = (1, 2, 3): mean 2, population std √(2/3) ⇒ ẑ = (−1.224745, 0, 1.224745); c = 2 doubles it.
    from hfs.pipeline.model.selection import standardized_logits

    out = standardized_logits(T([[1.0, 2.0, 3.0]]), 2.0, eps=0.0)
    assert torch.allclose(out, T([[-2.449490, 0.0, 2.449490]]), atol=1e-6)


def test_selection_keys_and_frame_scores_by_hand():
    from hfs.pipeline.model.selection import frame_scores, selection_keys

    z = T([[-20.0, 0.0, 20.0]])
    # σ path: log σ(z) = −log(1 + e^{−z}) = (−20.000000002, −0.693147, −2.06e−9), all finite (no clamp at 1e-8)
    keys = selection_keys(z, "sigmoid")
    assert torch.allclose(keys, T([[-20.0, -math.log(2.0), 0.0]]), atol=1e-6)
    assert torch.allclose(frame_scores(keys, "sigmoid"), torch.sigmoid(z))
    # logit path: ẑ = (−1.224745, 0, 1.224745), keys c·ẑ, scores σ(c·ẑ)
    keys = selection_keys(z, "logit", 1.0)
    assert torch.allclose(keys, T([[-1.224745, 0.0, 1.224745]]), atol=1e-5)
    assert torch.allclose(frame_scores(keys, "logit"), T([[sig(-1.224745), 0.5, sig(1.224745)]]), atol=1e-5)


@pytest.mark.parametrize("path", ["logit", "sigmoid"])
@pytest.mark.parametrize("offset", [20.0, -20.0])
def test_key_gradients_are_finite_and_nonzero_at_large_logits(path, offset):
    """|z| = 20: σ(20) is 1.0 in float32 and σ(−20) is below the old 1e-8 clamp; either way
    log clamp(σ(z)) had exactly zero gradient. The keys keep one on both paths."""
    from hfs.pipeline.model.selection import gumbel_topk_keys, selection_keys

    z = (offset + torch.linspace(-0.5, 0.5, 12)).unsqueeze(0).requires_grad_(True)
    keys = selection_keys(z, path, 2.0)
    soft = gumbel_topk_keys(keys, 4, 1.0, generator=torch.Generator().manual_seed(0)).soft
    (soft * torch.arange(12.0)).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    if path == "logit":  # not just non-zero: the offset does not shrink it
        assert z.grad.abs().sum() > 1e-2
    # today's path (s = σ(z) then log clamp(s)) has none there
    zs = z.detach().clone().requires_grad_(True)
    old = gumbel_topk(torch.sigmoid(zs), 4, 1.0, generator=torch.Generator().manual_seed(0)).soft
    (old * torch.arange(12.0)).sum().backward()
    if path == "sigmoid":
        assert zs.grad.abs().sum() == 0.0


def test_a_shared_logit_offset_changes_neither_keys_nor_f():
    """F of the logit path cannot be raised by adding a constant to every logit (or by
    scaling them); on the paper's σ path it can, which is what pinned its scores at 1."""
    from hfs.pipeline.model.selection import frame_scores, gumbel_topk_keys, selection_keys

    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))
    t = torch.arange(32.0)
    noise = gumbel_noise((3, 32), generator=torch.Generator().manual_seed(1))

    def f_of(z, path):
        keys = selection_keys(z, path, 2.0)
        m = gumbel_topk_keys(keys, 4, 1.0, noise=noise).soft
        return set_objective(frame_scores(keys, path), m, t)

    for shifted in (z + 5.0, z - 5.0, 3.0 * z):
        torch.testing.assert_close(f_of(shifted, "logit"), f_of(z, "logit"), atol=1e-4, rtol=1e-4)
    assert (f_of(z + 5.0, "sigmoid") > f_of(z, "sigmoid") + 0.1).all()
    # and its gradient w.r.t. a shared offset is 0
    c = torch.zeros(1, requires_grad=True)
    f_of(z + c, "logit").sum().backward()
    assert abs(float(c.grad)) < 1e-4


def test_gumbel_topk_is_gumbel_topk_keys_on_log_s():
    from hfs.pipeline.model.selection import gumbel_topk_keys

    s = scores(B=2, N=16)
    noise = gumbel_noise((2, 16), generator=torch.Generator().manual_seed(3))
    a, b = gumbel_topk(s, 4, 1.0, noise=noise), gumbel_topk_keys(torch.log(s), 4, 1.0, noise=noise)
    assert torch.equal(a.indices, b.indices) and torch.allclose(a.soft, b.soft)


def test_plackett_luce_log_prob_by_hand():
    # keys log(1, 2, 1) (weights 1, 2, 1 of 4): P(order 1, 0) = 2/4 · 1/2 = 1/4; P(2, 1) = 1/4 · 2/3 = 1/6.
    from hfs.pipeline.model.selection import plackett_luce_log_prob

    keys = torch.log(T([[1.0, 2.0, 1.0], [1.0, 2.0, 1.0]]))
    out = plackett_luce_log_prob(keys, torch.tensor([[1, 0], [2, 1]]))
    assert torch.allclose(out, torch.log(T([1 / 4, 1 / 6])), atol=1e-6)
    # every order of k = N sums to probability 1
    import itertools

    orders = torch.tensor(list(itertools.permutations(range(3))))
    lp = plackett_luce_log_prob(keys[:1].expand(len(orders), 3), orders)
    assert torch.allclose(lp.exp().sum(), T(1.0), atol=1e-6)


def test_gumbel_topk_samples_the_plackett_luce_order():
    """The drawn order of Gumbel-top-k is a PL sample: empirical frequency ≈ exp(log_prob)."""
    from hfs.pipeline.model.selection import plackett_luce_log_prob

    keys = torch.log(T([[0.5, 0.3, 0.2]]))
    g = gumbel_noise((20000, 3), generator=torch.Generator().manual_seed(0))
    order = (keys + g).topk(2, dim=-1).indices
    hits = (order == torch.tensor([0, 1])).all(-1).float().mean()
    expected = plackett_luce_log_prob(keys, torch.tensor([[0, 1]])).exp()  # 0.5 · 0.3/0.5 = 0.3
    assert abs(float(hits) - float(expected)) < 0.015 and abs(float(expected) - 0.3) < 1e-6


def test_selection_config_score_path_and_estimator():
    cfg = SelectionConfig()
    assert (cfg.score_path, cfg.estimator, cfg.num_samples) == ("logit", "score_function", 4)
    assert SelectionConfig(estimator="straight_through").num_samples == 1
    assert SelectionConfig(estimator="score_function", samples=3).num_samples == 3
    for bad in (dict(score_path="probit"), dict(estimator="simple"), dict(logit_scale=0.0),
                dict(estimator="score_function", samples=1)):
        with pytest.raises(ValueError):
            SelectionConfig(**bad)


def test_per_sample_noise_with_several_samples_starts_with_the_one_sample_draw():
    from hfs.pipeline.model.selection import per_sample_noise

    one, many = per_sample_noise([4, 9], 16), per_sample_noise([4, 9], 16, samples=3)
    assert many.shape == (2, 3, 16) and torch.equal(many[:, 0], one)
