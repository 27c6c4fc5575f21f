"""Training throughput: one process with every core's threads vs one process per core.

Both arms train the shipped model's architecture, from its weights, on the default corpus's
``train`` split with the shipped recipe's batches (160 padded seconds, at most 48
utterances, no SpecAugment): arm ``threads`` is one process with ``--threads`` = the core
count; arm ``processes`` is that many single-threaded processes (gloo, ``asr.distributed``)
each taking its share of every batch. Rounds alternate the arms; each round makes
``--updates`` updates and the median interval between updates after the first
``--skip`` is that round's time per update. Reported: the median over rounds per arm and
their ratio; both arms draw the same batches, so time per update is time per batch.

Writes ``benchmarks/results/train_parallel.json`` (atomically).

Usage: ``python -m benchmarks.bench_train_parallel [--updates 14] [--rounds 2] [--quick]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from benchmarks.common import RESULTS, apply_quick_defaults, free_port, run_metadata, write_result


def _worker(rank: int, world: int, port: int, threads: int, updates: int, skip: int,
            run_dir: str, out: str) -> None:
    from asr.checkpoint import load_checkpoint
    from asr.default import default_checkpoint, load_split
    from asr.train import TrainConfig, train

    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = load_checkpoint(default_checkpoint())[0]
        train_set, dev_set = load_split("train"), load_split("dev")[:8]
        config = TrainConfig(max_updates=10_000, max_batch_seconds=160.0, max_batch_size=48,
                             learning_rate=1e-5, warmup_updates=1, curriculum_updates=0, specaugment=None,
                             eval_every=10_000, dev_utterances=8, threads=threads)
        stamps: list[float] = []
        train(model.config, config, train_set, dev_set, run_dir, init_from=model, stop_at_update=updates,
              progress=lambda *_: stamps.append(time.perf_counter()))
        if rank == 0:
            # The last interval holds the checkpoint written at the stop: left out too.
            intervals = [b - a for a, b in zip(stamps, stamps[1:])][skip:-1]
            Path(out).write_text(str(statistics.median(intervals)))
    finally:
        if world > 1:
            dist.destroy_process_group()


def _round(world: int, threads: int, updates: int, skip: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "seconds")
        args = (world, free_port(), threads, updates, skip, os.path.join(tmp, "run"), out)
        if world == 1:
            _worker(0, *args)
        else:
            mp.spawn(_worker, args=args, nprocs=world, join=True)
        return float(Path(out).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=14, help="updates per round")
    parser.add_argument("--skip", type=int, default=3, help="first intervals of a round left out")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per arm, alternating")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="processes / threads")
    parser.add_argument("--quick", action="store_true", help="one short round per arm")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick_defaults(parser, args, {"updates": 7, "skip": 2, "rounds": 1})
    if args.updates < args.skip + 3 or args.cores < 2 or args.rounds < 1:
        parser.error(f"need --updates >= --skip + 3, --cores >= 2 and --rounds >= 1; got "
                     f"{args.updates}, {args.skip}, {args.cores}, {args.rounds}")
    arms: dict[str, list[float]] = {"threads": [], "processes": []}
    for _ in range(args.rounds):
        arms["threads"].append(_round(1, args.cores, args.updates, args.skip))
        arms["processes"].append(_round(args.cores, 1, args.updates, args.skip))
    medians = {arm: statistics.median(v) for arm, v in arms.items()}
    result = run_metadata(
        cores=args.cores, updates_per_round=args.updates, skipped=args.skip, rounds=args.rounds,
        batch_seconds=160.0, seconds_per_update=arms, median_seconds_per_update=medians,
        speedup_processes_over_threads=medians["threads"] / medians["processes"],
    )
    path = write_result("train_parallel.json", result, args.output_dir)
    print(f"{path}: {medians['threads']:.2f} s/update with {args.cores} threads, "
          f"{medians['processes']:.2f} s with {args.cores} processes "
          f"({result['speedup_processes_over_threads']:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
