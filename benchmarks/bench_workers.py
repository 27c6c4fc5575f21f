"""Evaluations per minute against the number of Ray workers.

For each worker count (``--workers``, default 1,2), a :class:`~agents.workers.RayPool` of
that many actors (``--threads`` torch threads each) evaluates the same ``--configs`` random
per-layer configurations (after one warm batch, so actor start-up is not counted), timed
end to end in the driver; the median of ``--repeats`` gives evaluations per minute, and the
speed-up is against the first worker count. Two targets:

* ``default``: the shipped model on the search subset (greedy decoding);
* ``fixed``: the toy target with a fixed, known cost per evaluation (``--fixed-seconds``
  of sleep): the ideal speed-up is the worker count, so the gap is the pool's overhead.

Every worker count must return identical errors for the same configurations; the JSON
records whether it did. On a GPU machine, ``--device cuda --gpus 0.125 --workers 1,2,4,8
--preset large`` measures the curve for the ``large`` preset (untrained weights, the default
search subset), each actor on a fraction of the GPU.

Writes ``benchmarks/results/workers.json``. Run: ``python -m benchmarks.bench_workers``
(nothing else running: the workers share this machine's cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_subset import probe_actions
from benchmarks.common import RESULTS, apply_quick_defaults, run_metadata, write_result
from benchmarks.search_study import parse_ints, parse_names
from shrinkml_env.plan import CompressionPlan
from shrinkml_env.search_space import DEFAULT_MENU
from shrinkml_env.target import CompressionTarget, toy_target

QUICK = {"configs": 4, "repeats": 1, "targets": "fixed", "output_dir": RESULTS / "quick"}


class _Sleepy:
    """The toy error plus a fixed sleep: an evaluation of known cost (picklable)."""

    def __init__(self, evaluate, seconds: float) -> None:
        self.evaluate, self.seconds = evaluate, seconds

    def __call__(self, model) -> float:
        time.sleep(self.seconds)
        return self.evaluate(model)


def build_target(name: str, fixed_seconds: float, preset: str | None, device: str) -> CompressionTarget:
    if name == "fixed":
        toy = toy_target()
        return CompressionTarget(model=toy.model, layers=toy.layers, evaluate=_Sleepy(toy.evaluate, fixed_seconds),
                                 name=f"toy+{fixed_seconds}s", data_fingerprint=f"{toy.data_fingerprint}-sleep")
    if name == "default":
        from asr.target import asr_target, default_target

        if preset is None:
            return default_target(device=device)
        import tempfile

        from asr.checkpoint import save_checkpoint
        from asr.model import build_model
        from asr.text import CharTokenizer

        path = Path(tempfile.mkdtemp()) / f"{preset}.pt"
        save_checkpoint(path, build_model(preset), CharTokenizer())
        return asr_target(path, device=device, name=preset)
    raise ValueError(f"unknown target {name!r}; accepted: default, fixed")


def main(argv: list[str] | None = None) -> int:
    import ray

    from agents.workers import RayPool

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--targets", default="default,fixed")
    parser.add_argument("--configs", type=int, default=12, help="configurations per timed batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--fixed-seconds", type=float, default=0.5)
    parser.add_argument("--preset", help="the default target with an untrained model of this preset (e.g. large)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per worker")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick_defaults(parser, args, QUICK)
    counts, targets = parse_ints(args.workers), parse_names(args.targets)
    ray.init(num_cpus=max(counts) * args.threads, include_dashboard=False, log_to_driver=False)
    results = {}
    try:
        for name in targets:
            target = build_target(name, args.fixed_seconds, args.preset, args.device)
            plan = CompressionPlan(target, DEFAULT_MENU, "layer")
            rng = np.random.default_rng(args.seed)
            batches = [[plan.ranks(a) for a in probe_actions(plan, args.configs, rng, (0.2, 0.6))]
                       for _ in range(args.repeats + 1)]
            rows, reference = [], None
            for count in counts:
                pool = RayPool(target, workers=count, threads=args.threads, gpus=args.gpus, device=args.device)
                try:
                    pool.evaluate(batches[0])  # warm: every actor has run once
                    seconds, errors = [], []
                    for batch in batches[1:]:
                        start = time.perf_counter()
                        errors.append(pool.evaluate(batch))
                        seconds.append(time.perf_counter() - start)
                finally:
                    pool.close()
                reference = errors if reference is None else reference
                median = statistics.median(seconds)
                rows.append({"workers": count, "seconds_per_batch": seconds, "median_seconds": median,
                             "evaluations_per_minute": 60.0 * args.configs / median,
                             "identical_errors": errors == reference})
                print(f"{name}: {count} workers: {rows[-1]['evaluations_per_minute']:.1f} evaluations/min", file=sys.stderr)
            for row in rows:
                row["speedup"] = row["evaluations_per_minute"] / rows[0]["evaluations_per_minute"]
            results[name] = rows
    finally:
        ray.shutdown()
    payload = {**run_metadata(), "threads_per_worker": args.threads, "configs_per_batch": args.configs,
               "repeats": args.repeats, "fixed_seconds": args.fixed_seconds, "preset": args.preset,
               "device": args.device, "gpus_per_worker": args.gpus, "targets": results}
    print(write_result("workers.json", payload, args.output_dir))
    for name, rows in results.items():
        print(name, ", ".join(f"{r['workers']}w {r['evaluations_per_minute']:.1f}/min ({r['speedup']:.2f}x, "
                              f"identical {r['identical_errors']})" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
