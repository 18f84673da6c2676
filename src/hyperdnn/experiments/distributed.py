"""Data-parallel runs under ``torchrun``: which process this is, and the few collectives the runner needs.

Every process builds the same model from the same seed and draws the same global
batch; a recipe takes its slice with :meth:`RunContext.shard`, and each trainable
parameter's gradient is averaged over the processes as soon as backward has
accumulated it (a hook per parameter, as DDP's reducer does per bucket). Averaging
there, rather than wrapping the model in ``DistributedDataParallel``, covers every
entry point of a HyperDNN (``model(x)``, ``model.weights``, ``run_target``), a second
backward that adds to the gradients (the output regularizer), and gradient clipping
after backward. Without torchrun (no ``WORLD_SIZE`` in the environment) everything
here is a no-op for a world of one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hyperdnn.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run.

    Attributes:
        rank: 0 .. world_size - 1; rank 0 writes the run directory.
        world_size: processes training together.
        local_rank: the rank on this machine (picks the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, dev: torch.device) -> torch.device:
        """The device of this process: ``cuda:local_rank`` when the run asks for CUDA under torchrun."""
        if self.world_size > 1 and dev.type == "cuda" and dev.index is None:
            return torch.device("cuda", self.local_rank)
        return dev

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def broadcast_path(self, path: Path | None) -> Path:
        """Rank 0's ``path`` on every rank."""
        if self.world_size == 1 and path is not None:
            return path
        box = [str(path) if path is not None else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return Path(box[0])


def average_gradients(module: nn.Module, world_size: int, done: set[int]) -> None:
    """Average each trainable parameter's gradient over the processes when backward accumulates it.

    Args:
        module: a tracked module.
        world_size: processes in the run.
        done: ids of parameters already hooked (shared parameters are hooked once).
    """
    for p in module.parameters():
        if p.requires_grad and id(p) not in done:
            done.add(id(p))

            def hook(param: torch.Tensor) -> None:
                torch.distributed.all_reduce(param.grad)
                param.grad.div_(world_size)

            p.register_post_accumulate_grad_hook(hook)


def shard(tensors: tuple[torch.Tensor, ...], rank: int, world_size: int) -> Any:
    """This process's contiguous slice of a global batch, along dim 0 (the tensors unchanged for one process).

    Raises:
        ConfigError: the batch does not split evenly (the mean over the slices would not be the global mean).
    """
    if world_size == 1:
        return tensors[0] if len(tensors) == 1 else tensors
    n = tensors[0].shape[0]
    if n % world_size:
        raise ConfigError(f"run: a batch of {n} does not split evenly over {world_size} processes; choose a batch size divisible by {world_size}")
    k = n // world_size
    out = tuple(t[rank * k : (rank + 1) * k] for t in tensors)
    return out[0] if len(out) == 1 else out


def mean_over_processes(values: list[float], flag: bool) -> tuple[list[float], bool]:
    """The mean of each value over the processes, and whether any process raised ``flag`` (one all-reduce)."""
    t = torch.tensor([*values, float(flag)], dtype=torch.float64)
    torch.distributed.all_reduce(t)
    n = torch.distributed.get_world_size()
    return [v / n for v in t[:-1].tolist()], bool(t[-1].item() > 0)


def world_size() -> int:
    """Processes in this run: torchrun's ``WORLD_SIZE``, else 1."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def current(device: str = "cpu") -> World:
    """The world of this process; under torchrun starts the process group (nccl for a CUDA run, gloo on the CPU).

    Args:
        device: the run's device (``"cpu"``, ``"cuda"``, ``"cuda:N"``); picks the backend.
    """
    if world_size() == 1:
        return World()
    dist = torch.distributed
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))
