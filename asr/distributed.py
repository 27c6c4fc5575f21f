"""Data-parallel training over several processes (``torchrun``), on CPUs or GPUs.

:func:`asr.train.train` trains in every process of an initialised ``torch.distributed``
process group at once. Every process builds the same global batches (the data order does not
depend on the number of processes) and takes its own share of each, ``batch[rank::world]``;
each process scales its loss by its share of the batch's reference tokens (attention and
distillation terms) and utterances (CTC term), so the summed loss and gradient are the whole
batch's. Not bit for bit: a part pads its audio and frames to its own longest utterance, not
the batch's (the STFT reflects at the end of the longest, and the LSTMs see padding unless the
model packs its sequences), so the summed gradient agrees with one process's closely, and
exactly only for equal-length utterances with packing and no dropout (tested). One all-reduce
per update sums the gradients and, on the same buffer, the parts' losses and rank 0's
wall-clock "time is up" flag, so every process clips, steps and stops alike and the logged
loss is the batch's; rank 0 alone evaluates on dev and writes checkpoints, history and the
time box's plan (a :class:`asr.train.TrainResult` on another rank does not know the best dev
WER). Ranks other than 0 draw their own dropout and augmentation randomness, seeded from the
run's seed, their rank and the update they start at, so a resumed run keeps the exact data
order but not their random draws.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "Shares",
    "barrier",
    "broadcast_object",
    "broadcast_parameters",
    "process_group_from_environment",
    "rank_and_world",
    "run_on_rank_zero",
    "shard",
    "shares",
    "sum_gradients",
]

T = TypeVar("T")

# How long a process waits in a collective for the others: rank 0 alone generates a missing
# default corpus (about 11 minutes on 2 cores, longer on fewer) and decodes dev while the others
# wait in the next update's all-reduce, so torch's default (10 to 30 minutes) is too short.
TIMEOUT = timedelta(hours=3)


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


@contextmanager
def process_group_from_environment(device: str) -> Iterator[tuple[int, int, str]]:
    """Join the process group that ``torchrun`` describes in the environment, if any, for the
    block; the group it joined is left again at the end, error or not, and on a normal exit only
    once every process has reached it.

    Yields ``(rank, world size, device)``: without ``WORLD_SIZE`` > 1 in the environment,
    ``(0, 1, device)`` and nothing is initialised; with it, the gloo backend on CPUs or nccl
    on GPUs, each process on the GPU of its ``LOCAL_RANK`` (``device="cuda"``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        yield 0, 1, device
        return
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world} is set but {name} is not; launch several processes "
                             "with torchrun (e.g. torchrun --nproc-per-node 2 -m agents.cli train-asr ...)")
    if device.startswith("cuda"):
        if ":" in device:
            raise ValueError(f"device {device!r}: with several processes give 'cuda'; each process "
                             "takes the GPU of its LOCAL_RANK")
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise ValueError(f"process LOCAL_RANK={local} has no GPU: torch sees {torch.cuda.device_count()}; "
                             "start at most one process per GPU (--nproc-per-node)")
        device = f"cuda:{local}"
        torch.cuda.set_device(torch.device(device))
    if dist.is_initialized():  # joined by the caller, who leaves it too
        yield dist.get_rank(), dist.get_world_size(), device
        return
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo", timeout=TIMEOUT)
    try:
        yield dist.get_rank(), dist.get_world_size(), device
        # On a normal exit every rank waits here for the slowest (rank 0 decodes dev and saves
        # after the last update) rather than tear the group down under it: gloo aborts then.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """This process's part of a batch: every ``world``-th item from ``rank`` (may be empty)."""
    return list(items[rank::world])


def shares(token_counts: Sequence[int], rank: int, world: int) -> Shares:
    """The share of the batch (its utterances' reference token counts) that :func:`shard`
    gives ``rank``."""
    mine = shard(token_counts, rank, world)
    return Shares(tokens=sum(mine) / max(sum(token_counts), 1), utterances=len(mine) / max(len(token_counts), 1))


def sum_gradients(parameters: Iterable[torch.nn.Parameter], values: Sequence[float] = ()) -> list[float]:
    """Sum every parameter's gradient over the process group, in place, and ``values`` (a few
    numbers: a stop flag, a loss) beside them, in one all-reduce; returns the summed values.

    A parameter that no process gave a gradient keeps none (so the optimiser skips it, as a
    single process would); one that only some processes did (a process whose part of a batch
    was empty) counts as zeros on the others.
    """
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("sum_gradients got no trainable parameters")
    dtype, device = params[0].dtype, params[0].device
    flat = torch.cat([
        *((p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params),
        torch.tensor([float(p.grad is not None) for p in params], dtype=dtype, device=device),
        torch.tensor(list(values), dtype=dtype, device=device),
    ])
    dist.all_reduce(flat)
    offset = 0
    used = flat[-len(params) - len(values) : len(flat) - len(values)].tolist()
    for p, had in zip(params, used):
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone() if had > 0 else None
        offset += n
    return flat[len(flat) - len(values) :].tolist()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Give every process rank 0's parameters and buffers."""
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def run_on_rank_zero(fn: Callable[[], T]) -> T:
    """``fn()`` run by rank 0 alone, its result given to every process (picklable).

    For work one process should do for all (generating the default corpus, choosing the
    manifests), so that every process trains on what rank 0 chose. If ``fn`` raises on rank
    0, the others raise too, naming rank 0's error, rather than waiting for a timeout.
    """
    rank, world = rank_and_world()
    if world == 1:
        return fn()
    outcome: list[Any] = [None, None]
    try:
        if rank == 0:
            outcome = [fn(), None]
    except BaseException as e:
        outcome = [None, f"{type(e).__name__}: {e}"]
        dist.broadcast_object_list(outcome, src=0)
        raise
    dist.broadcast_object_list(outcome, src=0)
    if outcome[1] is not None:
        raise ValueError(f"rank 0 failed while preparing the run: {outcome[1]}")
    return outcome[0]


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` (picklable), on every process."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every process (nothing without a process group)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


