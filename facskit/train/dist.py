"""Distributed data parallel (DDP) glue: reads the torchrun environment, and does nothing without it.

Runbook (``train.batch_size`` is the *global* batch, so one config gives the same optimisation on any
number of GPUs; each rank gets ``batch_size / (world_size * grad_accum)`` frames per micro-batch):

One GPU (or CPU), no launcher::

    facskit train scc-bp4d --data cache/bp4d --out runs/scc-f0 --fold 0

N GPUs on one machine::

    torchrun --standalone --nproc_per_node=4 -m facskit train scc-bp4d --data cache/bp4d --out runs/scc-f0

Two nodes with 8 GPUs each (run on both; node 0's address reachable from node 1)::

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=$NODE_RANK \\
        --rdzv_backend=c10d --rdzv_endpoint=$HEAD_NODE:29500 --rdzv_id=scc-f0 \\
        -m facskit train scc-bp4d --data /shared/cache/bp4d --out /shared/runs/scc-f0

SLURM (one task per node, torchrun starts the per-GPU workers)::

    #SBATCH --nodes=2 --ntasks-per-node=1 --gpus-per-node=8 --cpus-per-task=64
    HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
    srun torchrun --nnodes=$SLURM_NNODES --nproc_per_node=8 --rdzv_backend=c10d \\
        --rdzv_endpoint=$HEAD:29500 --rdzv_id=$SLURM_JOB_ID \\
        -m facskit train scc-bp4d --data /shared/cache/bp4d --out /shared/runs/scc-f0

Rules the trainer follows: the process group uses NCCL on CUDA and Gloo on CPU; only rank 0 writes
logs, metrics and checkpoints, and it saves the unwrapped module (no ``module.`` prefix); the run folder
must be on a filesystem all nodes see for resume. Resuming works with a different number of GPUs as long
as ``batch_size`` stays divisible. BatchNorm statistics are per rank unless ``model.sync_bn=true``
(CUDA only); ``model.freeze_bn=true`` uses running statistics instead (also what makes CPU DDP match a
single process exactly). Validation predictions are all-gathered so ICC is computed on every frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist

__all__ = ["DistInfo", "all_gather_objects", "all_reduce_sum", "barrier", "cleanup", "init_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job; ``world_size == 1`` and ``enabled == False`` without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes files."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's RANK / WORLD_SIZE / LOCAL_RANK, if any.

    Without those variables (a plain ``facskit train``) nothing happens. On CUDA the process binds to
    GPU ``LOCAL_RANK`` before NCCL starts. Calling it twice reuses the existing group.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if world_size <= 1:
        return DistInfo(rank=rank, world_size=1, local_rank=local_rank, enabled=False)
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, enabled=True)


def cleanup(info: DistInfo) -> None:
    if info.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        torch_dist.barrier()


def all_reduce_sum(info: DistInfo, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of a few floats over ranks (loss sums and counts)."""
    if not info.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
    return tensor.tolist()


def all_gather_objects(info: DistInfo, value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable, e.g. numpy arrays of predictions), in rank order."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    torch_dist.all_gather_object(gathered, value)
    return gathered
