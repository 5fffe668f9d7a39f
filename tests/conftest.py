"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_thread():
    """torch on one intra-op thread for the module.

    Tiny models run fastest on one thread; with two test processes on two
    cores (`make test`), more threads only fight over the cores.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
