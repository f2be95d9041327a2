"""torch.distributed helpers for multi-process training launched by torchrun (NCCL on GPUs, gloo on CPUs).

Outside torchrun everything degrades to a single process of rank 0, so the training code has one path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """Where this process sits: its rank among `size` processes, and the device it trains on."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and shows progress."""
        return self.rank == 0


def init_world(device: str = "cpu") -> World:
    """Join the process group if torchrun started us (WORLD_SIZE > 1), else a world of one. `device` has been
    through avatar.runs.check_device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(0, 1, device)
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    return World(rank, size, device)


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module, world: World) -> None:
    """Give every process the main process's parameters and buffers."""
    if world.size == 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(params: list[torch.nn.Parameter], world: World) -> None:
    """All-reduce the gradients of `params` into their mean over processes (one flat buffer, one call)."""
    grads = [p.grad for p in params if p.grad is not None]
    if world.size == 1 or not grads:
        return
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def all_gather_objects(value: Any, world: World) -> list[Any]:
    """Every process's `value`, in rank order (used to save each rank's RNG state in the checkpoint)."""
    if world.size == 1:
        return [value]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, value)
    return out


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def main_decides(flag: bool, world: World) -> bool:
    """The main process's `flag` in every process (stop on its clock or its Ctrl-C, so all stop together)."""
    if world.size == 1:
        return flag
    value = torch.tensor([float(flag)], device=world.device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def average_values(values: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of `values` over processes (e.g. the losses a log row reports)."""
    if world.size > 1:
        dist.all_reduce(values)
        values /= world.size
    return values
