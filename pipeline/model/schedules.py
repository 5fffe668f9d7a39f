"""Training schedules of HFS (paper §4.1), as pure functions of the optimiser step.

Being pure functions of ``step`` (as nanoGPT's ``get_lr``), they need no state in a
checkpoint: resuming at step ``n`` gives exactly the values of an uninterrupted run.
"""

from __future__ import annotations

import math

__all__ = ["gumbel_tau", "lambda_kl", "learning_rate"]


def _check_step(step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError(f"step must be an int, got {type(step).__name__}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


def gumbel_tau(step: int, tau0: float = 2.0, decay: float = 0.999, tau_min: float = 0.5) -> float:
    """Gumbel-TopK temperature τ of Eq. 10 at optimiser step ``step``.

    τ(step) = max(τ_min, τ0 · decay^step): exponential decay from τ0 = 2.0 by 0.999 per
    step, floored at τ_min = 0.5 (paper §4.1). The floor is reached at step 1386.
    """
    _check_step(step)
    if tau0 <= 0 or tau_min <= 0:
        raise ValueError(f"tau0 and tau_min must be > 0, got tau0={tau0}, tau_min={tau_min}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    return max(tau_min, tau0 * decay**step)


def lambda_kl(step: int, steps_per_epoch: int, start: float = 0.1, end: float = 1.0) -> float:
    """Weight λ_KL of the KL term in Eq. 21 at optimiser step ``step``.

    Linear warm-up from ``start`` (0.1, at step 0) to ``end`` (1.0) over the first epoch,
    i.e. ``steps_per_epoch`` optimiser steps, then constant ``end`` (paper §4.1):
    λ_KL = start + (end − start) · min(step / steps_per_epoch, 1).
    """
    _check_step(step)
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int):
        raise TypeError(f"steps_per_epoch must be an int, got {type(steps_per_epoch).__name__}")
    if steps_per_epoch <= 0:
        raise ValueError(
            f"steps_per_epoch must be >= 1 (optimiser steps in one epoch), got {steps_per_epoch}"
        )
    frac = min(step / steps_per_epoch, 1.0)
    return start + (end - start) * frac


def learning_rate(step: int, total_steps: int, lr: float, warmup_steps: int = 0, schedule: str = "constant") -> float:
    """AdamW learning rate at optimiser step ``step`` (the paper states only lr = 1e-5).

    Linear warm-up from 0 over ``warmup_steps`` (lr·(step+1)/warmup_steps), then
    "constant": lr; "cosine": lr·½(1 + cos(π·p)), p = (step − warmup)/(total − warmup),
    reaching 0 after the last step.
    """
    _check_step(step)
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        p = min(1.0, (step - warmup_steps) / span)
        return lr * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
