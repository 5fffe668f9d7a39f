"""Gradient clipping of the trained parameters: the student's and the teacher's each on its own,
or all together (the paper's single clip).

The teacher's LoRA θ3 and its scorer MLP_t sit behind the teacher's loss and can take
gradients orders of magnitude larger than the student's; under one global norm the student
then takes the teacher's scale and barely moves. ``train.clip_mode = "per_group"`` clips each
side to ``train.grad_clip`` separately.
"""

from __future__ import annotations

import math
from typing import Literal, Mapping, Sequence

import torch

__all__ = ["TEACHER_GROUPS", "clip_sets", "clip_gradient_norms", "grad_norm_metrics", "clip_gradients"]

TEACHER_GROUPS = ("theta3", "MLP_t")
"""The teacher's trained parameter groups (``HFSModel.parameter_groups``); every other one is the student's."""


def clip_sets(groups: Mapping[str, Sequence[torch.nn.Parameter]],
              mode: Literal["per_group", "global"]) -> dict[str, list[torch.nn.Parameter]]:
    """The parameter sets clipped together: ``{"student": ..., "teacher": ...}`` (a side without
    trained parameters left out) or, globally, ``{"all": ...}``."""
    if mode == "global":
        return {"all": [p for ps in groups.values() for p in ps]}
    if mode != "per_group":
        raise ValueError(f"clip mode must be 'per_group' or 'global', got {mode!r}")
    sides = {"student": [p for name, ps in groups.items() if name not in TEACHER_GROUPS for p in ps],
             "teacher": [p for name, ps in groups.items() if name in TEACHER_GROUPS for p in ps]}
    return {side: ps for side, ps in sides.items() if ps}


def clip_gradient_norms(groups: Mapping[str, Sequence[torch.nn.Parameter]], max_norm: float,
                        mode: Literal["per_group", "global"]) -> dict[str, torch.Tensor]:
    """Clip the gradients of ``groups`` (name → parameters) to the L2 norm ``max_norm`` (0: no
    clipping) per set of ``clip_sets``. Returns each set's norm before clipping as a 0-d tensor
    on the parameters' device: nothing waits for the device here (``grad_norm_metrics`` makes
    the logged numbers of them once they are on the host)."""
    limit = max_norm if max_norm > 0 else math.inf
    return {side: torch.nn.utils.clip_grad_norm_(ps, limit) for side, ps in clip_sets(groups, mode).items()}


def grad_norm_metrics(norms: Mapping[str, float], mode: Literal["per_group", "global"]) -> dict[str, float]:
    """The logged norms of ``clip_gradient_norms``'s sets (as floats): ``grad_norm`` over every
    parameter, and per side ``grad_norm_student`` / ``grad_norm_teacher`` (per_group)."""
    if mode == "global":
        return {"grad_norm": float(norms["all"])}
    total = math.sqrt(sum(float(n) ** 2 for n in norms.values()))
    return {"grad_norm": total, **{f"grad_norm_{side}": float(n) for side, n in norms.items()}}


def clip_gradients(groups: Mapping[str, Sequence[torch.nn.Parameter]], max_norm: float,
                   mode: Literal["per_group", "global"]) -> dict[str, float]:
    """``clip_gradient_norms``, then its ``grad_norm_metrics``: clips, and returns the norms before
    clipping as floats (one host sync per set)."""
    return grad_norm_metrics(clip_gradient_norms(groups, max_norm, mode), mode)
