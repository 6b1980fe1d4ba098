"""Multi-process training with torch.distributed, shared by `StarDist.fit` and
`ShapeClassifier.fit`.

The same code runs single-process unchanged. Started by ``torchrun --nproc_per_node N``
(``WORLD_SIZE`` > 1 in the environment), training joins the process group (gloo on CPU,
NCCL on GPUs), wraps the network in DistributedDataParallel, gives each rank a disjoint
share of every batch, and lets only rank 0 write checkpoints and show progress. Gradients
are averaged over ranks at every step, so all ranks hold identical weights.
"""

from __future__ import annotations

import os


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a distributed run.

    Initializes the default process group from torchrun's environment on first use.
    """
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return 0, 1
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def wrap(module, world_size: int):
    """`module` in DistributedDataParallel when ``world_size > 1`` (parameters broadcast from
    rank 0)."""
    if world_size <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)


def any_rank(flag: bool, world_size: int) -> bool:
    """True on every rank if `flag` is true on any (e.g. a time limit reached on one rank)."""
    if world_size <= 1:
        return bool(flag)
    import torch
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def shard(batch_size: int, world_size: int, what: str = "batch_size") -> int:
    """Per-rank share of a global batch; the global batch must split evenly."""
    if batch_size % world_size:
        raise ValueError(f"{what}={batch_size} does not split over {world_size} processes; "
                         f"use a multiple of {world_size}")
    return batch_size // world_size


def mean_over_ranks(values, world_size: int):
    """Average numbers over ranks, so decisions taken from them (best epoch, learning rate)
    are the same on every rank."""
    if world_size <= 1:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) / world_size for v in t]


def sync_buffers(module, world_size: int) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank.

    DistributedDataParallel broadcasts them before each forward pass; after the last step
    each rank holds its own update, so training ends with this to leave identical models.
    """
    if world_size <= 1:
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)
