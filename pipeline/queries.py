"""Task-query sampling of HFS (paper §3.2, Eq. 5).

The student's θ1 pass over ``E_input = [E_CoT; E_qa]`` (length ``Lp + L``) yields hidden
states ``H``; the K task queries ``q_task^(k)`` are ``H`` at K uniformly spread positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["task_query_positions", "gather_task_queries"]


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def task_query_positions(K: int, length: int) -> list[int]:
    """Eq. 5: positions ``j_k = ⌊(k−1)/(K−1) · (length−1)⌋`` for k = 1..K (0-based).

    ``length`` is ``Lp + L``, the number of tokens of ``E_input``. The first query is at
    position 0 and the last at ``length − 1``. The paper's formula divides by zero for
    K = 1; we take the last position (the usual sentence summary of a causal LM).
    K = 0 gives no queries. When K > length some positions repeat (e.g. K=4, length=2 →
    [0, 0, 0, 1]); the formula allows it and so do we. Integer arithmetic, so no float
    rounding can move a position.
    """
    _check_int("K", K, 0)
    _check_int("length", length, 1)
    if K == 0:
        return []
    if K == 1:
        return [length - 1]
    return [((k - 1) * (length - 1)) // (K - 1) for k in range(1, K + 1)]


def gather_task_queries(hidden: Tensor, lengths: Tensor | None, K: int) -> Tensor:
    """Eq. 5 for a right-padded batch: ``hidden [B, T, d]`` → ``q_task [B, K, d]``.

    Row b has ``lengths[b]`` real tokens (positions 0..lengths[b]−1, padding after them);
    its positions are ``task_query_positions(K, lengths[b])``. ``lengths=None`` means
    every row is unpadded (length T). Differentiable w.r.t. ``hidden``.
    """
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be [B, T, d], got shape {tuple(hidden.shape)}")
    _check_int("K", K, 0)
    B, T, d = hidden.shape
    if lengths is None:
        lengths = torch.full((B,), T, dtype=torch.long, device=hidden.device)
    lengths = torch.as_tensor(lengths, device=hidden.device)
    if lengths.shape != (B,):
        raise ValueError(f"lengths must be [B]={B}, got shape {tuple(lengths.shape)}")
    if lengths.is_floating_point():
        raise TypeError("lengths must be an integer tensor")
    lengths = lengths.long()
    if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        raise ValueError(f"lengths must lie in [1, T={T}], got {lengths.tolist()}")
    if K == 0:
        return hidden[:, :0, :]
    if K == 1:
        pos = (lengths - 1).unsqueeze(1)  # [B, 1]
    else:
        k = torch.arange(K, device=hidden.device)  # k − 1 for k = 1..K
        pos = (k.unsqueeze(0) * (lengths - 1).unsqueeze(1)).div(K - 1, rounding_mode="floor")
    return torch.gather(hidden, 1, pos.unsqueeze(-1).expand(B, K, d))
