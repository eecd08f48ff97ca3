"""Data-parallel runs under torchrun: process-group setup and the launch command.

Every rank trains on its contiguous shard of each global batch; DistributedDataParallel averages
the gradients, so the optimizer (ALTO's global clip included) sees the gradient of the whole
effective batch = per-rank micro-batch x ranks x accumulation. Only rank 0 opens the database,
evaluates and writes checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist | None:
    """The torchrun environment, or None for a plain single-process run. A world of one launched
    by torchrun takes the process-group path too (on one GPU that proves the NCCL launch)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return Dist(rank=int(os.environ["RANK"]), world=int(os.environ["WORLD_SIZE"]),
                local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init(ctx: Dist) -> None:
    """NCCL between GPUs, gloo on the CPU."""
    if dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend=backend)


def broadcast(obj, ctx: Dist):
    """Rank 0's `obj` on every rank (rank 0 reads the database, the others never open it)."""
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def launch_argv(run_id: int, db_path: str, config: dict, python: str, *, torchrun: bool | None = None) -> list[str]:
    """The command that starts one run: plain, or under torchrun for several processes (or, with
    torchrun=True, for one: the GPU smoke check launches a world of one)."""
    module = ["-m", "alto.train", str(run_id), "--db", str(db_path)]
    nproc, nnodes = int(config.get("nproc_per_node") or 1), int(config.get("nnodes") or 1)
    if not (torchrun if torchrun is not None else nproc * nnodes > 1):
        return [python, *module]
    rendezvous = (["--standalone"] if nnodes == 1 else
                  ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", config["rdzv_endpoint"]])
    return [python, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *rendezvous, *module]
