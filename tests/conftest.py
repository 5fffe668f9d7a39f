"""Fixtures shared by every test folder."""

from __future__ import annotations

import os

import pytest

# Two test processes share two cores: spinning OpenMP waiters make torch up to 40x slower
# there (see stages/cli.py). Set before any test module imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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
