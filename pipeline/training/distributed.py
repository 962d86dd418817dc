"""Device choice, mixed precision and DDP: everything that differs between a laptop and a GPU node.

`torchrun` sets WORLD_SIZE/RANK/LOCAL_RANK; then every rank joins one process group (NCCL on
GPUs, gloo on CPUs), reads its own shard of blocks and averages gradients. Rank 0 alone writes
files. The few values ranks must agree on (batches per epoch, the time budget's step estimate)
go through `all_min` and `broadcast`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> tuple[Dist, bool]:
    """Join the torchrun process group if WORLD_SIZE > 1; returns (info, we created the group)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(0, 1, 0), False
    own = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        own = True
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank), own


def pick_device(ddp: Dist) -> torch.device:
    """This rank's GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        torch.cuda.set_device(ddp.local_rank)
        return torch.device("cuda", ddp.local_rank)
    return torch.device("cpu")


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, else fp16 (with a grad scaler); full precision on the CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def torch_threads(requested: int, workers: int, ddp: Dist) -> int:
    """`train.threads` (0 = the cores this process may use beside its loader workers)."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ddp.world_size))
    return requested or max(1, (os.cpu_count() or 1) // local_world - workers)


def _collective_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def all_min(values: list[int], ddp: Dist, device: torch.device) -> list[int]:
    """The element-wise minimum of `values` over ranks (itself without DDP)."""
    if ddp.world_size == 1:
        return values
    t = torch.tensor(values, device=_collective_device(device))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return [int(v) for v in t.cpu()]


def broadcast(value: int, ddp: Dist, device: torch.device) -> int:
    """Rank 0's `value` on every rank."""
    if ddp.world_size == 1:
        return value
    t = torch.tensor([value], device=_collective_device(device))
    dist.broadcast(t, src=0)
    return int(t.item())
