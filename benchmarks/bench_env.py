"""Cost of the environment itself: steps, cached terminal steps, model building, SVD precompute.

Writes ``benchmarks/results/env.json``. Uses the shipped default target when this
installation has one (the real model and search subset); the toy target otherwise, and the
untrained ``default`` preset for the SVD precompute (same shapes as the shipped model).

Run: ``python -m benchmarks.bench_env [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, run_metadata, write_result
from shrinkml_env.compression import SVDBank, describe_layers
from shrinkml_env.env import ShrinkMLEnv
from shrinkml_env.target import CompressionTarget, toy_target


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def measure(target: CompressionTarget, repeats: int) -> dict:
    env = ShrinkMLEnv(target=target, budget=0.4)
    rng = np.random.default_rng(0)
    step_s, terminal_cached_s = [], []
    actions = [int(a) for a in rng.integers(0, env.menu.size, env.steps)]
    env.reset()
    for a in actions:  # first pass: fills the cache
        env.step(a)
    for _ in range(repeats):
        env.reset()
        for a in actions[:-1]:
            start = time.perf_counter()
            env.step(a)
            step_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        *_, info = env.step(actions[-1])
        terminal_cached_s.append(time.perf_counter() - start)
        assert info["cache_hit"]
    # Building a terminal model: rewriting every matrix (worst case) vs one evaluation.
    plan = env.plan
    build_s, evaluate_s = [], []
    for k in range(max(3, repeats // 20)):
        ranks = plan.ranks([k % (env.menu.size - 1)] * env.steps)
        plan.search_model.restore_dense()
        start = time.perf_counter()
        plan.search_model.apply(plan.rank_map(ranks))
        build_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        target.checked_error(plan.search_model.model)
        evaluate_s.append(time.perf_counter() - start)
    return {
        "target": target.name,
        "steps_per_episode": env.steps,
        "matrices": len(plan.matrices),
        "nonterminal_step_ms": _median_ms(step_s),
        "cached_terminal_step_ms": _median_ms(terminal_cached_s),
        "build_terminal_model_ms": _median_ms(build_s),
        "evaluation_ms": _median_ms(evaluate_s),
        "build_share_of_evaluation": statistics.median(build_s) / statistics.median(evaluate_s),
    }


def svd_precompute_ms(repeats: int = 5) -> dict:
    from asr.model import build_model

    torch.manual_seed(0)
    model = build_model("default")
    layers = describe_layers(model, model.compressible_layers())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        SVDBank.compute(model, layers)
        times.append(time.perf_counter() - start)
    params = sum(m.dense_parameter_count for m in layers)
    return {"model": "default preset", "compressible_parameters": params, "svd_precompute_ms": _median_ms(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200, help="episodes timed per target")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the JSON goes (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (default: 2, what a search evaluates with on this machine)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1; got {args.threads}")
    torch.set_num_threads(args.threads)
    targets = [toy_target()]
    try:
        from asr.target import default_target

        targets.append(default_target())
    except FileNotFoundError as e:
        print(f"default target unavailable ({e}); timing the toy target only", file=sys.stderr)
    rows = [measure(t, args.repeats) for t in targets]
    result = {**run_metadata(), "targets": rows, "svd": svd_precompute_ms()}
    path = write_result("env.json", result, args.output_dir)
    print(path)
    for row in rows:
        print(row)
    print(result["svd"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
