"""Training in a wall-clock box: the learning-rate schedule sized to the time a run has.

This recipe's gains come while the rate decays (model card: dev WER barely moves at the peak
rate and falls steeply through the decay), so a run that a deadline cuts off before its decay
has spent most of its time for little. Given minutes instead of updates,
:func:`train_in_minutes` first trains at the schedule's peak for a short timing stretch on the
machine it runs on, measures the time per update (the median of the per-update intervals, so
one slow batch or start-up does not skew it) and the cost of one dev evaluation, then resumes
the same run directory with ``max_updates`` chosen so that the linear decay ends as the box
does. The deadline stays as a safety net: if the estimate was optimistic the run stops
resumably there, with ``best.pt`` scored. The plan and what happened are written to
``timebox.json`` in the run directory.

Why by hand: this is a few lines of arithmetic over :func:`asr.train.train`'s own
``stop_after_seconds`` and resume; the schedulers of the training libraries (e.g. PyTorch's
``OneCycleLR``) take a step count, which is exactly what is unknown here.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from asr.distributed import broadcast_object, rank_and_world
from asr.manifest import Utterance
from asr.model import ASRConfig
from asr.train import TrainConfig, TrainResult, train
from shrinkml_env.atomic import atomic_write_text

__all__ = ["TimeBox", "TimeBoxPlan", "plan_updates", "train_in_minutes"]

_NO_DECAY = 10**9  # max_updates during the timing stretch: the schedule stays at its peak


@dataclass(frozen=True)
class TimeBox:
    """How long to train, and how much of it to spend measuring the machine."""

    minutes: float
    timing_fraction: float = 0.08  # share of the box trained at the peak rate while timing updates
    margin: float = 0.97  # share of the time left that the schedule plans to fill

    def __post_init__(self) -> None:
        if not self.minutes > 0:
            raise ValueError(f"TimeBox.minutes must be > 0; got {self.minutes}")
        if not 0.0 < self.timing_fraction < 1.0 or not 0.0 < self.margin <= 1.0:
            raise ValueError(
                f"TimeBox.timing_fraction must be in (0, 1) and margin in (0, 1]; got "
                f"{self.timing_fraction}, {self.margin}"
            )


@dataclass(frozen=True)
class TimeBoxPlan:
    """What the timing stretch measured and the schedule chosen from it."""

    timed_updates: int  # updates the timing stretch made
    seconds_per_update: float  # median interval between updates
    eval_seconds: float  # one dev evaluation, beyond an update's time
    seconds_left: float  # after the timing stretch
    max_updates: int  # the whole run's schedule length (updates before the box included)


def plan_updates(done: int, seconds_per_update: float, eval_seconds: float, seconds_left: float,
                 eval_every: int, margin: float = 1.0) -> int:
    """The run length whose remaining updates and dev evaluations fill ``seconds_left``.

    ``done`` updates are already made; evaluations come every ``eval_every`` updates and once
    at the end. Never less than ``done + 1``: a box too short still ends on one decayed update.
    """
    if seconds_per_update <= 0 or eval_every < 1:
        raise ValueError(f"seconds_per_update must be > 0 and eval_every >= 1; got "
                         f"{seconds_per_update}, {eval_every}")
    usable = margin * seconds_left - max(eval_seconds, 0.0)  # the final evaluation
    more = math.floor(usable / (seconds_per_update + max(eval_seconds, 0.0) / eval_every))
    return done + max(more, 1)


def train_in_minutes(
    model_config: ASRConfig,
    config: TrainConfig,
    train_set: Sequence[Utterance],
    dev_set: Sequence[Utterance],
    run_dir: str | os.PathLike[str],
    box: TimeBox,
    *,
    progress: Callable[[int, int | None, dict[str, float]], None] | None = None,
    **train_kwargs: Any,
) -> tuple[TrainResult, TimeBoxPlan]:
    """Train for ``box.minutes`` of wall time with the decay fitted to end on time.

    ``config.max_updates`` is replaced by the planned length; everything else (warm-up, peak
    rate, ``decay_start``, evaluations) is kept. ``train_kwargs`` go to :func:`asr.train.train`
    (``init_from``, ``meta``, ``teacher``...). A run directory holding an earlier run is resumed
    and trained for a new box. Returns the final :class:`TrainResult` and the plan.
    """
    if "stop_at_update" in train_kwargs or "stop_after_seconds" in train_kwargs:
        raise ValueError("train_in_minutes sets its own stop; pass TimeBox(minutes=...) instead of "
                         "stop_at_update / stop_after_seconds")
    started = time.perf_counter()
    box_seconds = 60.0 * box.minutes
    stamps: list[float] = []  # wall time after each update of the timing stretch

    def timed(update: int, total: int, stats: dict[str, float]) -> None:
        stamps.append(time.perf_counter())
        if progress is not None:  # the length is not known yet: the timing stretch reports none
            progress(update, None, stats)

    timing = train(model_config, replace(config, max_updates=_NO_DECAY), train_set, dev_set, run_dir,
                   progress=timed, stop_after_seconds=box.timing_fraction * box_seconds, **train_kwargs)
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    if not intervals:  # one update only: its whole call is the only measure
        intervals = [timing.seconds]
    per_update = statistics.median(intervals[:-1] or intervals)  # the last one holds the evaluation
    eval_seconds = max(intervals[-1] - per_update, 0.0)
    seconds_left = box_seconds - (time.perf_counter() - started)
    rank, world = rank_and_world()
    plan = None
    if rank == 0:  # only rank 0 sees the updates (and its clock decides when every process stops)
        plan = TimeBoxPlan(
            timed_updates=len(stamps),
            seconds_per_update=per_update,
            eval_seconds=eval_seconds,
            seconds_left=seconds_left,
            max_updates=plan_updates(timing.updates, per_update, eval_seconds, seconds_left,
                                     config.eval_every, box.margin),
        )
    if world > 1:
        plan = broadcast_object(plan)
    result = train(model_config, replace(config, max_updates=plan.max_updates), train_set, dev_set,
                   run_dir, progress=progress, stop_after_seconds=max(seconds_left, 0.0), **train_kwargs)
    record = {
        "box": asdict(box),
        "plan": asdict(plan),
        "updates": result.updates,
        "finished_schedule": result.updates >= plan.max_updates,
        "best_dev_wer": result.best_dev_wer,
        "seconds": time.perf_counter() - started,
        "device": config.device,
        "cuda": torch.cuda.get_device_name(torch.device(config.device)) if config.device.startswith("cuda") else None,
    }
    if rank == 0:
        atomic_write_text(Path(run_dir) / "timebox.json", json.dumps(record, indent=1) + "\n")
    return result, plan
