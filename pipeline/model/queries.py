"""Task-query sampling of HFS (paper §3.2, Eq. 5).

The student's θ1 pass over ``E_input = [E_CoT; E_qa]`` (length ``Lp + L``) yields hidden
states ``H``; the K task queries ``q_task^(k)`` are ``H`` at K uniformly spread positions.

Where the positions are spread (``StudentConfig.query_positions``):

* ``"paper"`` (default): over the whole of ``E_input``, Eq. 5 as written. Under a causal LM
  position 0 sees only the first token of the fixed CoT prompt, and the middle position
  usually falls inside that prompt too, so for K = 3 two of the three queries are the same
  for every sample.
* ``"question"``: K positions over the span of ``E_qa`` (question and options) inside
  ``E_input``, each the end of the next K-th of it, ``j_k = s + ⌈k·L/K⌉ − 1``: query k has
  read the first k/K of the question and options (the last one all of it). Spreading Eq. 5
  itself over that span would not do: its first position is E_qa's first token, the fixed
  "Question:" label, again the same for every sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["QUERY_POSITIONS", "task_query_positions", "question_query_positions", "gather_task_queries"]

QUERY_POSITIONS = ("paper", "question")


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


def question_query_positions(K: int, length: int) -> list[int]:
    """The "question" spread: ``j_k = ⌈k·length/K⌉ − 1`` for k = 1..K (0-based, within the span).

    Each position ends the next K-th of the span, so query k has read k/K of it; the last
    is the span's last token. K = 0 gives none; K > length repeats positions.
    """
    _check_int("K", K, 0)
    _check_int("length", length, 1)
    return [-(-k * length // K) - 1 for k in range(1, K + 1)]


def gather_task_queries(
    hidden: Tensor, lengths: Tensor | None, K: int, starts: Tensor | None = None, spread: str = "paper"
) -> Tensor:
    """Eq. 5 for a right-padded batch: ``hidden [B, T, d]`` → ``q_task [B, K, d]``.

    Row b's queries lie in the span of ``lengths[b]`` tokens that begins at ``starts[b]``
    (default 0, i.e. the whole row), at ``starts[b] + task_query_positions(K, lengths[b])``
    (``spread="paper"``) or ``starts[b] + question_query_positions(K, lengths[b])``
    (``spread="question"``). ``lengths=None`` means every row is unpadded (length T).
    Differentiable w.r.t. ``hidden``.
    """
    if spread not in QUERY_POSITIONS:
        raise ValueError(f"spread must be one of {QUERY_POSITIONS}, got {spread!r}")
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
    starts = torch.zeros_like(lengths) if starts is None else torch.as_tensor(starts, device=hidden.device).long()
    if starts.shape != (B,):
        raise ValueError(f"starts must be [B]={B}, got shape {tuple(starts.shape)}")
    if B and (int(lengths.min()) < 1 or int(starts.min()) < 0 or int((starts + lengths).max()) > T):
        raise ValueError(f"spans must lie in [0, T={T}), got starts {starts.tolist()} lengths {lengths.tolist()}")
    if K == 0:
        return hidden[:, :0, :]
    if spread == "question":
        k = torch.arange(1, K + 1, device=hidden.device)
        pos = -(-(k.unsqueeze(0) * lengths.unsqueeze(1))).div(K, rounding_mode="floor") - 1  # ⌈k·L/K⌉ − 1
    elif K == 1:
        pos = (lengths - 1).unsqueeze(1)  # [B, 1]
    else:
        k = torch.arange(K, device=hidden.device)  # k − 1 for k = 1..K
        pos = (k.unsqueeze(0) * (lengths - 1).unsqueeze(1)).div(K - 1, rounding_mode="floor")
    pos = pos + starts.unsqueeze(1)
    return torch.gather(hidden, 1, pos.unsqueeze(-1).expand(B, K, d))
