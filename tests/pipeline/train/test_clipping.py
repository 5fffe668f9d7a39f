"""Gradient clipping: the student's and the teacher's trained parameters clipped each on its own
(``train.clip_mode = "per_group"``) or together (``"global"``, the paper's single clip)."""

from __future__ import annotations

import pytest
import torch

from hfs.pipeline.train.clipping import clip_gradients


def _toy() -> dict[str, list[torch.nn.Parameter]]:
    """A student gradient of norm 0.5 (θ2 0.3, W_v 0.4) beside a teacher (θ3) gradient of norm 1e4."""
    groups = {name: [torch.nn.Parameter(torch.zeros(2))] for name in ("theta2", "W_v", "theta3")}
    for name, grad in (("theta2", [0.3, 0.0]), ("W_v", [0.0, 0.4]), ("theta3", [1e4, 0.0])):
        groups[name][0].grad = torch.tensor(grad)
    return groups


def test_per_group_leaves_the_student_alone_when_the_teachers_gradient_is_huge():
    groups = _toy()
    norms = clip_gradients(groups, max_norm=1.0, mode="per_group")
    assert groups["theta2"][0].grad.tolist() == pytest.approx([0.3, 0.0])
    assert groups["W_v"][0].grad.tolist() == pytest.approx([0.0, 0.4])
    assert groups["theta3"][0].grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    assert norms["grad_norm_student"] == pytest.approx(0.5)
    assert norms["grad_norm_teacher"] == pytest.approx(1e4)
    assert norms["grad_norm"] == pytest.approx((0.5**2 + 1e4**2) ** 0.5)  # before clipping, all together


def test_global_throttles_the_student_with_the_teacher():
    groups = _toy()
    norms = clip_gradients(groups, max_norm=1.0, mode="global")
    total = (0.5**2 + 1e4**2) ** 0.5
    assert groups["theta2"][0].grad[0].item() == pytest.approx(0.3 / total, rel=1e-4)
    assert groups["theta3"][0].grad[0].item() == pytest.approx(1e4 / total, rel=1e-4)
    assert norms == {"grad_norm": pytest.approx(total)}


def test_no_clip_only_measures():
    groups = _toy()
    norms = clip_gradients(groups, max_norm=0.0, mode="per_group")
    assert groups["theta3"][0].grad.tolist() == [1e4, 0.0]
    assert norms["grad_norm_student"] == pytest.approx(0.5)


def test_a_run_without_a_teacher_group_clips_the_student_alone():
    groups = _toy()
    del groups["theta3"]
    norms = clip_gradients(groups, max_norm=0.1, mode="per_group")
    assert set(norms) == {"grad_norm", "grad_norm_student"}
    assert groups["W_v"][0].grad.tolist() == pytest.approx([0.0, 0.08], rel=1e-4)
