"""Data-parallel runs under ``torchrun``: which process this is, and the few collectives the runner needs.

Without torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op
for a world of one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


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


def current() -> World:
    """The world of this process; starts the process group (gloo on CPU, nccl with CUDA) under torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    dist = torch.distributed
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("HYPERDNN_BACKEND") != "gloo" else "gloo")
    return World(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))
