"""Paper equations 5, 6, 11–15, 17, 19–21 and the schedules, on values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hfs.pipeline.model.losses import (
    LossTerms,
    answer_ce,
    kl_from_logits,
    kl_teacher_student,
    separation_loss,
    student_distribution,
    total_loss,
)
from hfs.pipeline.model.queries import gather_task_queries, question_query_positions, task_query_positions
from hfs.pipeline.model.schedules import gumbel_tau, lambda_kl
from hfs.pipeline.model.set_objective import (
    SetObjectiveConfig,
    coverage,
    kernel_times,
    redundancy,
    relevance,
    set_objective,
    set_objective_terms,
    temporal_kernel,
)

T = torch.tensor


def close(a, b, atol=1e-5):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=atol)


# ---------------------------------------------------------------- Eq. 5: task-query positions


@pytest.mark.parametrize(
    "K, length, expected",
    [
        (0, 10, []),  # no queries
        (1, 10, [9]),  # K = 1: last position (the formula would divide by 0)
        (2, 10, [0, 9]),  # 0/1·9 = 0, 1/1·9 = 9
        (3, 10, [0, 4, 9]),  # 0, ⌊1/2·9⌋ = ⌊4.5⌋ = 4, 9
        (4, 10, [0, 3, 6, 9]),  # 0, 9/3 = 3, 18/3 = 6, 9
        (4, 8, [0, 2, 4, 7]),  # 0, ⌊7/3⌋ = 2, ⌊14/3⌋ = 4, 7
        (3, 1, [0, 0, 0]),  # length 1: everything is position 0
        (1, 1, [0]),
        (3, 2, [0, 0, 1]),  # K > length: 0, ⌊1/2·1⌋ = 0, 1
        (5, 3, [0, 0, 1, 1, 2]),  # ⌊0⌋, ⌊0.5⌋, ⌊1⌋, ⌊1.5⌋, ⌊2⌋
    ],
)
def test_task_query_positions_by_hand(K, length, expected):
    assert task_query_positions(K, length) == expected


def test_task_query_positions_exact_integer_arithmetic():
    # K = 12, length = 56, k = 4: (k−1)/(K−1)·(length−1) = 3·55/11 = 165/11 = 15 exactly;
    # in floats 3/11·55 = 14.999999999999998 and floor gives 14.
    assert task_query_positions(12, 56)[3] == 15


@pytest.mark.parametrize("K, length, err", [(-1, 5, ValueError), (2, 0, ValueError), (1.5, 5, TypeError)])
def test_task_query_positions_validation(K, length, err):
    with pytest.raises(err, match="K|length"):
        task_query_positions(K, length)


def _hidden():
    # hidden[b, t] = (100·b + t, −t): every position identifies itself.
    t = torch.arange(6.0)
    rows = [torch.stack([100.0 * b + t, -t], dim=-1) for b in range(2)]
    return torch.stack(rows).requires_grad_()  # [2, 6, 2]


def test_gather_task_queries_per_row_lengths():
    hidden = _hidden()
    q = gather_task_queries(hidden, T([6, 3]), K=3)
    # Row 0, length 6: positions 0, ⌊2.5⌋ = 2, 5.  Row 1, length 3: positions 0, 1, 2.
    assert q.shape == (2, 3, 2)
    assert q[0, :, 0].tolist() == [0.0, 2.0, 5.0]
    assert q[1, :, 0].tolist() == [100.0, 101.0, 102.0]
    assert q[1, :, 1].tolist() == [0.0, -1.0, -2.0]
    q.sum().backward()  # gradient lands exactly on the gathered positions
    picked = hidden.grad[..., 0] != 0
    assert picked.tolist() == [[True, False, True, False, False, True], [True, True, True, False, False, False]]


def test_gather_task_queries_defaults_and_edges():
    hidden = _hidden()
    assert gather_task_queries(hidden, None, K=2)[:, :, 0].tolist() == [[0.0, 5.0], [100.0, 105.0]]
    assert gather_task_queries(hidden, T([6, 3]), K=1)[:, 0, 0].tolist() == [5.0, 102.0]  # last real token
    assert gather_task_queries(hidden, T([6, 3]), K=0).shape == (2, 0, 2)
    with pytest.raises(ValueError, match="lengths"):
        gather_task_queries(hidden, T([7, 3]), K=2)
    with pytest.raises(ValueError, match="lengths"):
        gather_task_queries(hidden, T([0, 3]), K=2)


@pytest.mark.parametrize("K, length, expected", [
    (0, 10, []),
    (1, 10, [9]),  # ⌈10/1⌉ − 1
    (3, 10, [3, 6, 9]),  # ⌈10/3⌉ − 1 = 3, ⌈20/3⌉ − 1 = 6, 9
    (4, 10, [2, 4, 7, 9]),  # ⌈2.5⌉ − 1, ⌈5⌉ − 1, ⌈7.5⌉ − 1, 9
    (3, 2, [0, 1, 1]),  # K > length: ⌈2/3⌉ − 1 = 0, ⌈4/3⌉ − 1 = 1, 1
])
def test_question_query_positions_by_hand(K, length, expected):
    assert question_query_positions(K, length) == expected


def test_gather_task_queries_over_a_span():
    hidden = _hidden()
    # paper spread: row 0, 3 tokens from position 2 → 2 + [0, 1, 2]; row 1, 4 tokens from 1 → 1 + [0, 1, 3].
    q = gather_task_queries(hidden, T([3, 4]), K=3, starts=T([2, 1]))
    assert q[0, :, 0].tolist() == [2.0, 3.0, 4.0] and q[1, :, 0].tolist() == [101.0, 102.0, 104.0]
    # question spread: row 0 → 2 + [0, 1, 2]; row 1 → 1 + [⌈4/3⌉ − 1, ⌈8/3⌉ − 1, 3] = 1 + [1, 2, 3].
    q = gather_task_queries(hidden, T([3, 4]), K=3, starts=T([2, 1]), spread="question")
    assert q[0, :, 0].tolist() == [2.0, 3.0, 4.0] and q[1, :, 0].tolist() == [102.0, 103.0, 104.0]
    assert gather_task_queries(hidden, T([3, 4]), K=1, starts=T([2, 1]))[:, 0, 0].tolist() == [4.0, 104.0]
    with pytest.raises(ValueError, match="spans"):
        gather_task_queries(hidden, T([5, 4]), K=2, starts=T([2, 1]))  # 2 + 5 > 6


# ---------------------------------------------------------------- Eq. 6: separation loss


def test_separation_loss_by_hand():
    # Orthogonal: cos = 0 → 0.  Parallel and anti-parallel: cos² = 1, K = 2: 2/(2·1)·1 = 1.
    assert close(separation_loss(T([[1.0, 0.0], [0.0, 1.0]])), 0.0)
    assert close(separation_loss(T([[1.0, 0.0], [2.0, 0.0]])), 1.0)
    assert close(separation_loss(T([[1.0, 0.0], [-3.0, 0.0]])), 1.0)
    # (1,0), (1,1), (0,1): cos² = 1/2, 0, 1/2 → sum 1, times 2/(3·2) = 1/3.
    assert close(separation_loss(T([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])), 1.0 / 3.0)
    # (1,0,0), (3,4,0), (0,0,2): cos12 = 3/5 → 0.36, cos13 = cos23 = 0 → 0.36/3 = 0.12.
    assert close(separation_loss(T([[1.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 2.0]])), 0.12)


def test_separation_loss_shapes_and_small_k():
    q = torch.randn(2, 3, 4, 8)
    out = separation_loss(q)
    assert out.shape == (2, 3)  # no reduction over the leading dims
    assert close(out[1, 2], separation_loss(q[1, 2]))
    for K in (0, 1):
        qk = torch.randn(5, K, 8, dtype=torch.float64, requires_grad=True)
        z = separation_loss(qk)
        assert z.shape == (5,) and z.dtype == torch.float64 and (z == 0).all()
        z.sum().backward()  # differentiable zero
        assert (qk.grad == 0).all()


# ---------------------------------------------------------------- Eqs. 11–15: set objective
# s = (0.8, 0.4, 0.2), m = (1, 0.5, 0), t = (0, 1, 10) frames, τc = 2, γ = 10.
S3, M3, T3 = T([[0.8, 0.4, 0.2]]), T([[1.0, 0.5, 0.0]]), T([0.0, 1.0, 10.0])
COV3 = 2.0 * math.log(math.exp(0.4) + math.exp(0.1) + 1.0)  # 2·ln(1.491825 + 1.105171 + 1) = 2.560198
RED3 = 2 * 1.0 * 0.5 * math.exp(-0.005)  # only the pair (1,2): 2·m1·m2·K12 = 0.995012


def test_relevance_eq11():
    # 0.8·1 + 0.4·0.5 + 0.2·0 = 1.0
    assert close(relevance(S3, M3), [1.0])


def test_coverage_eq12():
    # s·m/τc = (0.4, 0.1, 0) → 2·ln(e^0.4 + e^0.1 + e^0) = 2·ln 3.596996 = 2.560198
    assert close(coverage(S3, M3, tau_c=2.0), [2.560198])
    assert close(coverage(S3, M3), [COV3])
    # No overflow: s·m/τc = 500 twice → 2·(500 + ln 2) = 1001.386294.
    assert close(coverage(T([[1000.0, 1000.0]]), T([[1.0, 1.0]])), [1001.386294], atol=1e-3)


def test_temporal_kernel_eq13():
    k = temporal_kernel(T3, gamma=10.0)
    # exp(−1/200) = 0.995012, exp(−100/200) = 0.606531, exp(−81/200) = 0.666977; diagonal 1.
    expected = T([[1.0, 0.995012, 0.606531], [0.995012, 1.0, 0.666977], [0.606531, 0.666977, 1.0]])
    assert close(k, expected)
    kb = temporal_kernel(torch.stack([T3, 2 * T3]))  # [B, N] → [B, N, N]
    assert kb.shape == (2, 3, 3)
    assert close(kb[1, 0, 1], math.exp(-4 / 200))  # t = 0 and 2: exp(−4/200)


def test_redundancy_eq14():
    # Only m1, m2 ≠ 0: Σ_{i≠j} counts (1,2) and (2,1): 2·1·0.5·0.995012 = 0.995012
    assert close(redundancy(M3, T3, gamma=10.0), [0.995012])
    # Three frames at the same time, m = 1: 6 ordered pairs, K = 1 each → 6 (i = j excluded).
    assert close(redundancy(T([[1.0, 1.0, 1.0]]), T([5.0, 5.0, 5.0])), [6.0])
    # Per-row times [B, N]: row 1 at t = (0, 2, 20): 2·0.5·exp(−4/200) = 0.980199.
    t = torch.stack([T3, 2 * T3])
    assert close(redundancy(M3.expand(2, 3), t), [0.995012, 0.980199])


def test_set_objective_eq15_and_ablations():
    # F = 0.5·1.0 + 0.3·2.560198 − 0.2·0.995012 = 0.5 + 0.768059 − 0.199002 = 1.069057
    assert close(set_objective(S3, M3, T3), [1.069057])
    terms = set_objective_terms(S3, M3, T3)
    assert close(terms.relevance, [1.0]) and close(terms.coverage, [COV3]) and close(terms.redundancy, [RED3])
    # Table 5: a term that is off contributes 0.
    assert close(set_objective(S3, M3, T3, terms=("rel",)), [0.5])
    assert close(set_objective(S3, M3, T3, terms=("rel", "cov")), [1.268059])  # 0.5 + 0.768059
    assert close(set_objective(S3, M3, T3, terms=("rel", "red")), [0.300998])  # 0.5 − 0.199002
    assert close(set_objective(S3, M3, T3, terms=()), [0.0])
    # Other weights (Table 6 row 0.4/0.4/0.2): 0.4 + 0.4·2.560198 − 0.2·0.995012 = 1.225077
    assert close(set_objective(S3, M3, T3, weights=(0.4, 0.4, 0.2)), [1.225077])
    with pytest.raises(ValueError, match="unknown"):
        set_objective(S3, M3, T3, terms=("relevance",))


def test_set_objective_gradients_reach_s_and_m():
    s, m = S3.clone().requires_grad_(), M3.clone().requires_grad_()
    set_objective(s, m, T3).sum().backward()
    # ∂F/∂s_3 = 0.5·m_3 + 0.3·m_3·softmax_3 = 0 since m_3 = 0; the others are not 0.
    assert s.grad[0, 2] == 0 and (s.grad[0, :2] != 0).all()
    # ∂F/∂m_3 = 0.5·s_3 + 0.3·s_3·e^0/3.596996 − 0.2·2·(m_1·K13 + m_2·K23)
    #         = 0.1 + 0.016681 − 0.4·(0.606531 + 0.333489) = 0.116681 − 0.376008 = −0.259327
    assert close(m.grad[0, 2], -0.259327)


def test_set_objective_config_and_kernel_times():
    cfg = SetObjectiveConfig(weights=[0.5, 0.3, 0.2])
    assert cfg.weights == (0.5, 0.3, 0.2) and cfg.terms == ("rel", "cov", "red") and cfg.time_unit == "frames"
    with pytest.raises(ValueError):
        SetObjectiveConfig(time_unit="minutes")
    with pytest.raises(ValueError):
        SetObjectiveConfig(terms=("rel", "div"))
    ts = T([[0.5, 1.5, 2.5], [10.0, 20.0, 30.0]])
    assert kernel_times(ts, "frames").tolist() == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]
    assert kernel_times(ts, "seconds").tolist() == ts.tolist()
    with pytest.raises(ValueError):
        kernel_times(ts, "minutes")


# ---------------------------------------------------------------- Eq. 17: answer CE


def test_answer_ce_eq17():
    z = torch.log(T([[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]))  # softmax = (1/4, 1/4, 1/2)
    # y = 2: −ln(1/2) = 0.693147; y = 0: −ln(1/4) = 1.386294
    assert close(answer_ce(z, T([2, 0])), [0.693147, 1.386294])


# ---------------------------------------------------------------- Eqs. 19–20: mutual learning


def test_student_distribution_eq19():
    # s/τd = (1, 0): (e/(e+1), 1/(e+1)) = (0.731059, 0.268941)
    assert close(student_distribution(T([[0.5, 0.0]]), tau_d=0.5), [[0.731059, 0.268941]])
    # s/τd = (1.8, 1.8, 0.8): e^1.8 = 6.049647, e^0.8 = 2.225541, sum 14.324836
    # → (0.422319, 0.422319, 0.155362)
    assert close(student_distribution(T([[0.9, 0.9, 0.4]])), [[0.422319, 0.422319, 0.155362]])


def test_kl_eq20_by_hand_and_gradients():
    p_t = T([[0.5, 0.5]], dtype=torch.float64).requires_grad_()
    p_s = T([[0.25, 0.75]], dtype=torch.float64).requires_grad_()
    kl = kl_teacher_student(p_t, p_s)
    # 0.5·ln(0.5/0.25) + 0.5·ln(0.5/0.75) = 0.5·ln(4/3) = 0.143841
    assert close(kl, [0.143841])
    kl.sum().backward()
    # ∂/∂p_t,i = ln(p_t,i/p_s,i) + 1 = (1.693147, 0.594535); ∂/∂p_s,i = −p_t,i/p_s,i = (−2, −0.666667)
    assert close(p_t.grad, [[1.693147, 0.594535]])
    assert close(p_s.grad, [[-2.0, -0.666667]])
    # 0·log 0 = 0: p_t = (1, 0), p_s = (1/2, 1/2) → ln 2; equal distributions → 0.
    assert close(kl_teacher_student(T([[1.0, 0.0]]), T([[0.5, 0.5]])), [math.log(2)])
    p = torch.softmax(torch.randn(3, 16), -1)
    assert close(kl_teacher_student(p, p), torch.zeros(3))


def test_kl_from_logits_by_hand_and_gradients():
    teacher = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)  # p_t = (1/2, 1/2)
    student = T([[0.0, 0.5 * math.log(3)]], dtype=torch.float64).requires_grad_()  # /0.5 → (0, ln 3): p_s = (1/4, 3/4)
    kl = kl_from_logits(teacher, student, tau_d=0.5)
    assert close(kl, [0.143841])  # same as above
    kl.sum().backward()
    # ∂/∂student_j = (p_s,j − p_t,j)/τd = (−0.25, 0.25)/0.5 = (−0.5, 0.5)
    assert close(student.grad, [[-0.5, 0.5]])
    # ∂/∂teacher_j = p_t,j·(ln(p_t,j/p_s,j) − KL) = 0.5·(0.693147 − 0.143841), 0.5·(−0.405465 − 0.143841)
    assert close(teacher.grad, [[0.274653, -0.274653]])
    # Equal distributions → 0; agrees with the probability form on random inputs.
    assert close(kl_from_logits(T([[0.2, 1.0, -3.0]]), T([[0.1, 0.5, -1.5]]), tau_d=0.5), [0.0])
    a, b = torch.randn(4, 16), torch.rand(4, 16)
    assert close(kl_from_logits(a, b), kl_teacher_student(torch.softmax(a, -1), student_distribution(b)))


# ---------------------------------------------------------------- Eq. 21: total loss


def test_total_loss_eq21():
    ce, kl, f, sep = T([1.0, 3.0]), T([0.5, 1.5]), T([10.0, 30.0]), T([0.2, 0.4])
    # means 2, 1, 20, 0.3: 2 + 0.1·1 − 1e-4·20 + 0.01·0.3 = 2 + 0.1 − 0.002 + 0.003 = 2.101
    loss = total_loss(ce, kl, f, sep, lambda_kl=0.1, lambda_set=1e-4, lambda_sep=0.01)
    assert loss.dim() == 0 and close(loss, 2.101)
    # Scalars mix with [B]: 2 + 1.0·0.5 − 0.5·2 + 1·0 = 1.5
    assert close(total_loss(ce, 0.5, 2.0, T(0.0), 1.0, 0.5, 1.0), 1.5)
    # A switched-off term (None, or λ = 0) is left out, even when it is not finite.
    nan = T([float("nan"), 1.0])
    assert close(total_loss(ce, None, f, nan, 1.0, 1e-4, 0.0), 2.0 - 1e-4 * 20)
    c = ce.clone().requires_grad_()
    total_loss(c, kl, f, sep, 0.1, 1e-4, 0.01).backward()
    assert close(c.grad, [0.5, 0.5])  # ∂ mean / ∂ ce_b = 1/B


def test_loss_terms_as_dict():
    terms = LossTerms(total=T(2.101), ce=T([1.0, 3.0]), kl=T([0.5, 1.5]), sep=None, lambda_kl=0.1, lambda_set=1e-4)
    d = terms.as_dict()
    assert d["total"] == pytest.approx(2.101) and d["ce"] == 2.0 and d["kl"] == 1.0 and d["sep"] is None
    assert d["lambda_kl"] == 0.1 and d["lambda_sep"] == 0.0
    assert all(v is None or type(v) is float for v in d.values())
    assert set(d) == {"total", "ce", "kl", "set_objective", "relevance", "coverage", "redundancy", "sep",
                      "lambda_kl", "lambda_set", "lambda_sep"}


# ---------------------------------------------------------------- schedules


def test_gumbel_tau_schedule():
    assert gumbel_tau(0) == 2.0
    assert gumbel_tau(1) == pytest.approx(1.998)  # 2·0.999
    assert gumbel_tau(100) == pytest.approx(1.809584)  # 2·0.999^100 = 2·0.904792
    assert gumbel_tau(1000) == pytest.approx(0.735391)  # 2·0.999^1000 = 2·0.367695
    assert gumbel_tau(1385) == pytest.approx(0.500301)  # still above the floor
    assert gumbel_tau(1386) == 0.5  # 2·0.999^1386 = 0.499800 → floor 0.5
    assert gumbel_tau(10**6) == 0.5
    assert gumbel_tau(10, tau0=1.0, decay=0.5, tau_min=0.01) == pytest.approx(0.01)  # 2^-10 < 0.01
    with pytest.raises(ValueError):
        gumbel_tau(-1)


def test_lambda_kl_schedule():
    spe = 100
    assert lambda_kl(0, spe) == pytest.approx(0.1)
    assert lambda_kl(25, spe) == pytest.approx(0.325)  # 0.1 + 0.9·0.25
    assert lambda_kl(50, spe) == pytest.approx(0.55)  # 0.1 + 0.9·0.5
    assert lambda_kl(100, spe) == pytest.approx(1.0)
    assert lambda_kl(5000, spe) == pytest.approx(1.0)
    assert lambda_kl(0, 1) == pytest.approx(0.1) and lambda_kl(1, 1) == pytest.approx(1.0)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="steps_per_epoch"):
            lambda_kl(3, bad)
    with pytest.raises(ValueError):
        lambda_kl(-1, spe)


def test_leave_one_out_advantage_and_surrogate_by_hand():
    """Costs (1, 2, 6): baselines (4, 3.5, 1.5) ⇒ advantages (−3, −1.5, 4.5). The surrogate is
    0 in value; its gradient w.r.t. log p_r is A_r / R."""
    from hfs.pipeline.model.hfs_model import leave_one_out_advantage, score_function_surrogate

    cost = torch.tensor([[1.0, 2.0, 6.0]])
    assert torch.allclose(leave_one_out_advantage(cost), torch.tensor([[-3.0, -1.5, 4.5]]))
    log_p = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    out = score_function_surrogate(log_p, cost)
    assert out.shape == (1,) and float(out) == 0.0
    out.sum().backward()
    assert torch.allclose(log_p.grad, torch.tensor([[-1.0, -0.5, 1.5]]))
    with pytest.raises(ValueError):
        leave_one_out_advantage(torch.ones(2, 1))
