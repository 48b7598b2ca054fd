"""torchrun support: one process group per run, rank 0 writes the shared files.

Under `torchrun --nproc_per_node=N histo run ...` every process runs every stage; stages split their
work by `ctx.rank` / `ctx.world_size`. The runner keeps the processes in step around cache checks and
stage results, so all ranks agree on what was skipped and what failed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str) -> DistEnv:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size())

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Leave the process group together: a rank that exits while another still holds gloo's
        connections can be aborted in their C++ threads ("terminate called without an active
        exception") after its work is done."""
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()

    def sum(self, value: int) -> int:
        """Sum an integer over all processes (every rank gets the total)."""
        if self.world_size == 1:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(tensor)
        return int(tensor.item())
