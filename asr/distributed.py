"""Data-parallel training over several processes (``torchrun``), on CPUs or GPUs.

:func:`asr.train.train` trains in every process of an initialised ``torch.distributed``
process group at once. Every process builds the same global batches (the data order does not
depend on the number of processes) and takes its own share of each, ``batch[rank::world]``;
each process scales its loss by its share of the batch's reference tokens (attention and
distillation terms) and utterances (CTC term), so the summed gradient is the gradient of the
whole batch's loss, exactly where the model packs its sequences (``pack_in_training``). One
all-reduce per update sums the gradients, with rank 0's wall-clock "time is up" flag riding on
the same buffer, so every process clips, steps and stops alike; rank 0 alone evaluates on dev
and writes checkpoints, history and the time box's plan. Ranks other than 0 draw their own
dropout and augmentation randomness, seeded from the run's seed, their rank and the update
they start at, so a resumed run keeps the exact data order but not their random draws.

On one machine with several cores, ``torchrun --nproc-per-node 2 -m agents.cli train-asr
--threads 1 …`` runs two single-threaded processes (gloo backend); with GPUs, one process per
GPU (nccl). Across machines, the run directory and manifests must be reachable from every
process (a shared file system).

Why by hand rather than ``DistributedDataParallel``: a short final batch can leave a process
without utterances, which DDP cannot express (every process must run a forward pass on some
data), and the stop flag would need a collective of its own; the gradients here are one
flat buffer of a few MB, reduced once per update, so DDP's bucketing and overlap would buy
nothing measurable on this model. ``torch.distributed`` (the maintained library) does the
communication; this module only decides what is communicated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "Shares",
    "barrier",
    "broadcast_object",
    "broadcast_parameters",
    "init_from_environment",
    "rank_and_world",
    "rank_zero_first",
    "shard",
    "shares",
    "sum_gradients",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Shares:
    """One process's share of a global batch: of its reference tokens and of its utterances."""

    tokens: float
    utterances: float


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, or ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_environment(device: str) -> tuple[int, int, str]:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Returns ``(rank, world size, device)``: without ``WORLD_SIZE`` > 1 in the environment,
    ``(0, 1, device)`` and nothing is initialised; with it, the gloo backend on CPUs or nccl
    on GPUs, each process on the GPU of its ``LOCAL_RANK`` (``device="cuda"``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world} is set but {name} is not; launch several processes "
                             "with torchrun (e.g. torchrun --nproc-per-node 2 -m agents.cli train-asr ...)")
    if device.startswith("cuda"):
        if ":" in device:
            raise ValueError(f"device {device!r}: with several processes give 'cuda'; each process "
                             "takes the GPU of its LOCAL_RANK")
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """This process's part of a batch: every ``world``-th item from ``rank`` (may be empty)."""
    return list(items[rank::world])


def shares(token_counts: Sequence[int], rank: int, world: int) -> Shares:
    """The share of the batch (its utterances' reference token counts) that :func:`shard`
    gives ``rank``."""
    mine = shard(token_counts, rank, world)
    return Shares(tokens=sum(mine) / max(sum(token_counts), 1), utterances=len(mine) / max(len(token_counts), 1))


def sum_gradients(parameters: Iterable[torch.nn.Parameter], flag: float = 0.0) -> float:
    """Sum every parameter's gradient over the process group, in place, in one all-reduce;
    returns the sum of ``flag`` over the processes. A parameter without a gradient (a process
    that had no utterances) counts as zeros and is given the sum."""
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("sum_gradients got no trainable parameters")
    device = params[0].device
    flat = torch.cat([
        (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params
    ] + [torch.tensor([flag], dtype=params[0].dtype, device=device)])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n
    return float(flat[-1].item())


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Give every process rank 0's parameters and buffers."""
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable), on every process."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every process (nothing without a process group)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


@contextmanager
def rank_zero_first() -> Iterator[None]:
    """Run the block on rank 0 before the other processes run it (e.g. rank 0 generates the
    default corpus, the others then find it made)."""
    rank, world = rank_and_world()
    if rank > 0:
        dist.barrier()
    yield
    if rank == 0 and world > 1:
        dist.barrier()
