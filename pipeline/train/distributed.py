"""The processes of a run: one, or one per GPU under torchrun (DDP / sharded evaluation).

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; ``Processes`` then joins the
process group (NCCL on GPUs, gloo on the CPU) and pins this process to its GPU. Without
them it is the single process of a plain run, and every collective is the identity.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["Processes", "ProcessError", "frozen_parameter_names", "wrap_ddp"]


class ProcessError(RuntimeError):
    """The processes cannot start as asked (e.g. --device cuda without a GPU)."""


class Processes:
    """This process's place among the run's processes (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)."""

    def __init__(self, device: str = "auto") -> None:
        import torch
        import torch.distributed as dist

        self.ddp = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise ProcessError("--device cuda, but torch sees no CUDA device")
        if self.ddp:
            dist.init_process_group(backend="nccl" if cuda else "gloo")
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        else:
            self.rank, self.world, self.local_rank = 0, 1, 0
        if cuda:
            torch.cuda.set_device(self.local_rank)
        self.device = torch.device(f"cuda:{self.local_rank}" if cuda else "cpu")
        self.main = self.rank == 0

    def all_agree(self, flag: bool) -> bool:
        """True when ``flag`` is true in any process (every process gets the same answer)."""
        if not self.ddp:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: list[float]) -> list[float]:
        """Element-wise mean over processes."""
        if not self.ddp:
            return values
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def agree_and_mean(self, flag: bool, values: list[float]) -> tuple[bool, list[float]]:
        """``all_agree(flag)`` and ``mean(values)`` in one all-reduce (one wait for the
        device per optimiser step): the flag travels as a count of the processes that raised it."""
        if not self.ddp:
            return flag, values
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0, *values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        count, *sums = t.tolist()
        return count > 0, [x / self.world for x in sums]

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every process, in rank order (the same list in every process)."""
        if not self.ddp:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.ddp:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.ddp:
            import torch.distributed as dist

            dist.destroy_process_group()


def frozen_parameter_names(module) -> list[str]:
    """Names (``module.named_parameters()``'s) of the parameters that do not train."""
    return [name for name, p in module.named_parameters() if not p.requires_grad]


def wrap_ddp(module):
    """``module`` in ``DistributedDataParallel``, with its frozen parameters ignored.

    DDP broadcasts every parameter it manages from rank 0 when it wraps the module (and checks
    their shapes across processes); for the paper's pair that is ~10B frozen base weights each
    process already loaded from the same files. Registered as ignored, only the trainable
    ones (adapters and heads) are broadcast and all-reduced. Buffers (rotary tables) are the
    same everywhere, so they are not synced before every forward either."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, frozen_parameter_names(module))
    no_sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
               else "broadcast_buffers")
    return DistributedDataParallel(module, **{no_sync: False})
