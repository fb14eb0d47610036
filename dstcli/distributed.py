"""Data-parallel training across processes started by `torchrun` (see docs/scale.md).

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them a run is one process and every
helper here is a no-op, so the one-process trainer pays nothing. The trainer keeps no wrapper
around the model (DistributedDataParallel would run its own backward hooks, and the schedulers
run the backward themselves): after a scheduler's backward it averages the gradients here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dstcli.errors import DstError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def share(self, batch: list[int]) -> list[int]:
        """This rank's rows of a global batch: every rank takes the same number of steps and
        the ranks' rows together are the batch."""
        return batch[self.rank::self.size] if self.active else batch


def from_env() -> World:
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise DstError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers (set by torchrun): "
                       f"{e}") from None
    if size < 1 or not 0 <= rank < size:
        raise DstError(f"RANK {rank} is outside WORLD_SIZE {size}: start dst with torchrun")
    return World(rank, size, local)


def init(world: World, device: torch.device) -> bool:
    """Join the process group (nccl on CUDA, gloo on CPU); True when this call created it."""
    if not world.active or dist.is_initialized():
        return False
    if not dist.is_available():
        raise DstError("this torch build has no torch.distributed; run one process")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size)
    return True


def close(created: bool) -> None:
    if created and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def sum_tensor(world: World, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor summed over the ranks (in place)."""
    if world.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(world: World, flag: bool, device: torch.device) -> bool:
    """True when `flag` is set on any rank: every rank then takes the same branch."""
    if not world.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(sum_tensor(world, t).item() > 0)


def average_gradients(world: World, params: list[torch.nn.Parameter],
                      device: torch.device) -> None:
    """Average every gradient that some rank has; a rank without one counts zero. A gradient
    that no rank has (a dropped task's head) stays None, so the optimizer skips it as it
    would in one process."""
    if not world.active or not params:
        return
    present = torch.tensor([0.0 if p.grad is None else 1.0 for p in params], device=device)
    sum_tensor(world, present)
    chosen = [p for p, n in zip(params, present.tolist(), strict=True) if n > 0]
    if not chosen:
        return
    for p in chosen:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    # One flat buffer: one collective per step instead of one per parameter.
    flat = torch.cat([p.grad.reshape(-1).float() for p in chosen])
    sum_tensor(world, flat).div_(world.size)
    offset = 0
    for p in chosen:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def average_buffers(world: World, module: torch.nn.Module) -> None:
    """Batch-norm running statistics are estimated per rank; average the floating ones so that
    every rank (and rank 0's checkpoint) holds the same model."""
    if not world.active:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            sum_tensor(world, buffer.data).div_(world.size)


def gather(world: World, value: Any) -> list[Any]:
    """Every rank's `value` (a picklable object), in rank order."""
    if not world.active:
        return [value]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out
