"""DDP wrapping: only the trained parameters are DDP's to broadcast and all-reduce."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from hfs.pipeline.train.distributed import frozen_parameter_names, wrap_ddp

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_ignores_exactly_the_frozen_parameters_of_the_model(one_process_group, monkeypatch):
    from torch.nn.parallel import DistributedDataParallel

    from hfs.pipeline.model.hfs_model import HFSConfig, HFSModel

    torch.manual_seed(0)
    model = HFSModel.build(HFSConfig.tiny("qwen2_5_vl"), device="cpu")
    trained = {id(p) for ps in model.trainable_parameters().values() for p in ps}
    names = dict(model.named_parameters())
    frozen = {n for n, p in names.items() if id(p) not in trained}
    assert frozen and len(frozen) < len(names)
    assert set(frozen_parameter_names(model)) == frozen

    passed = []
    set_ignored = DistributedDataParallel._set_params_and_buffers_to_ignore_for_model

    def spy(module, ignored):
        passed.append((module, list(ignored)))
        return set_ignored(module, ignored)

    monkeypatch.setattr(DistributedDataParallel, "_set_params_and_buffers_to_ignore_for_model", staticmethod(spy))
    ddp = wrap_ddp(model)
    assert len(passed) == 1 and passed[0][0] is model and set(passed[0][1]) == frozen
    assert ddp.parameters_to_ignore == frozen
    assert {id(p) for p in ddp._module_parameters} == trained  # what DDP broadcasts at wrapping


def test_frozen_parameter_names_follow_requires_grad():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    net[0].weight.requires_grad_(False)
    assert frozen_parameter_names(net) == ["0.weight"]
