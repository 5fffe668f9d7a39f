"""Random states of a resumed run: restored per process, or reseeded per process when the
number of processes changed."""

from __future__ import annotations

import torch

from hfs.pipeline.train.checkpoint import restore_rng, rng_state


def _draws(saved: list, rank: int, world: int, step: int = 5) -> torch.Tensor:
    """What process ``rank`` of ``world`` draws for dropout after resuming from ``saved``."""
    torch.manual_seed(0)  # every process seeds the same before building the model
    restore_rng(saved, rank, world, seed=0, step=step)
    return torch.rand(16)


def test_a_changed_world_size_gives_every_process_its_own_dropout_stream_deterministically():
    torch.manual_seed(123)
    one_process = [rng_state()]
    rank0, rank1 = _draws(one_process, 0, 2), _draws(one_process, 1, 2)
    assert not torch.equal(rank0, rank1)
    assert torch.equal(rank0, _draws(one_process, 0, 2)) and torch.equal(rank1, _draws(one_process, 1, 2))
    assert not torch.equal(rank0, _draws(one_process, 0, 2, step=6))  # a later resume draws afresh


def test_the_same_world_size_restores_each_process_exactly():
    saved = []
    for seed in (7, 8):
        torch.manual_seed(seed)
        saved.append(rng_state())
    expected = []
    for seed in (7, 8):
        torch.manual_seed(seed)
        expected.append(torch.rand(16))
    assert restore_rng(saved, 1, 2, seed=0, step=5)
    assert torch.equal(torch.rand(16), expected[1])
    assert torch.equal(_draws(saved, 0, 2), expected[0])
