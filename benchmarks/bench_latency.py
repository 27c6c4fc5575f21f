"""Predicted against measured latency, and latency-budget against size-budget search.

1. The latency table of the target (``ShrinkMLEnv(budget_metric="latency")``: measured once,
   cached per machine, torch, threads and batch size) predicts the end-to-end latency of
   many configurations: uniform compression at every menu fraction, the most a latency
   budget can remove, and random allocations. Each one is exported (truly factorised) and
   timed end to end, interleaved with the dense model, on two workloads: the table's own
   (dev utterances) and the first ``--test-utterances`` test utterances (greedy decoding at
   the table's batch size). Reported: predicted and measured milliseconds, the speed-up
   each predicts and measures, and the error of the prediction, both of the milliseconds
   (which drift with the machine's load between the table and the check) and of the ratio to
   the dense model timed beside it (which does not).
2. For each size budget, a size-budget search and a latency-budget search (same agent,
   evaluations and seed), the latency budget set to the speed the size search's model
   measured; both exports are timed side by side and scored on test, and so is the size
   search's export with :func:`fastest_routes` (modules the table prices above dense
   multiplied back; same WER up to rounding).

Writes ``latency.json`` (``benchmarks/results`` or ``--output-dir``).

Run::

    python -m benchmarks.bench_latency               # the shipped model, batch 1
    python -m benchmarks.bench_latency --quick       # fewer configurations and repeats
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.baselines import random_actions
from agents.config import SearchConfig
from agents.search import run_search
from agents.targets import make_search_target
from benchmarks.common import (
    apply_quick_defaults,
    latency_workload_on_test,
    parse_size_ratios,
    run_metadata,
)
from benchmarks.study_output import set_threads, write_output
from shrinkml_env.compression import fastest_routes
from shrinkml_env.compression.timing import interleaved_medians_ms
from shrinkml_env.env import ShrinkMLEnv

QUICK = {"random_configs": 4, "repeats": 3, "test_utterances": 20, "evaluations": 30}


def _configurations(env: ShrinkMLEnv, count: int, seed: int) -> dict[str, list[int]]:
    """Menu actions per step: uniform at each fraction, cheapest latency, random feasible ones."""
    dense = env.menu.size - 1
    configs = {"dense": [dense] * env.steps}
    for action in range(dense):
        configs[f"uniform {env.menu.fraction(action):.4g}"] = [action] * env.steps
    configs["fastest"] = [int(np.argmin(row)) for row in env.costs.unit_costs]
    rng = np.random.default_rng(seed)
    for k in range(count):
        configs[f"random {k}"] = random_actions(env, rng)
    return configs


def predicted_vs_measured(env: ShrinkMLEnv, args) -> list[dict[str, Any]]:
    configs = _configurations(env, args.random_configs, args.seed)
    models, rows = {}, []
    for name, actions in configs.items():
        ranks = env.plan.ranks(actions)
        models[name] = env.target.model if name == "dense" else env.plan.export(ranks).eval()
        rows.append({"config": name, "actions": list(actions), "size_ratio": env.plan.params(ranks) / env.plan.dense_total,
                     "predicted_ms": env.costs.total(actions), "predicted_ratio": env.costs.ratio(actions)})
    dev = env.target.inference
    test = latency_workload_on_test(args.test_utterances, args.batch)
    on_dev = interleaved_medians_ms({n: (lambda m=m: dev(m, args.batch)) for n, m in models.items()},
                                    repeats=args.repeats, warmup=1)
    on_test = interleaved_medians_ms({n: (lambda m=m: test(m)) for n, m in models.items()},
                                     repeats=args.repeats, warmup=1)
    for row in rows:
        name = row["config"]
        row["measured_ms"] = on_dev[name]
        row["measured_ratio"] = on_dev[name] / on_dev["dense"]
        row["prediction_error"] = row["predicted_ms"] / on_dev[name] - 1.0
        row["ratio_error"] = row["predicted_ratio"] / row["measured_ratio"] - 1.0
        row["test_measured_ms"] = on_test[name]
        row["test_measured_ratio"] = on_test[name] / on_test["dense"]
        row["test_prediction_error"] = row["predicted_ratio"] / row["test_measured_ratio"] - 1.0
        row["test_speedup"] = on_test["dense"] / on_test[name]
    return rows


def search_comparison(kit, env: ShrinkMLEnv, args, size_budget: float, out: Path) -> dict[str, Any]:
    common = dict(agent=args.agent, evaluations=args.evaluations, seed=args.seed, target="default", score="wer",
                  test_utterances=args.search_test_utterances, latency_batch=args.batch,
                  factorisation=args.factorisation)
    size = run_search(SearchConfig(budget=size_budget, **common), out / "size", kit)
    test = latency_workload_on_test(args.test_utterances, args.batch)
    dense = kit.target.model
    size_model = _exported(size)
    first = interleaved_medians_ms({"dense": lambda: test(dense), "size": lambda: test(size_model)},
                                   repeats=args.repeats, warmup=1)
    # The latency search gets the speed the size search's model measured, or the fastest the
    # table predicts reachable if that is lower (the prediction is then the limit, and says so).
    latency_budget = min(1.0, max(first["size"] / first["dense"], env.costs.smallest_ratio() + 1e-6))
    latency = run_search(SearchConfig(budget=latency_budget, budget_metric="latency", **common), out / "latency", kit)
    latency_model = _exported(latency)
    routed_model, routes = fastest_routes(size_model, env.latency)
    timed = interleaved_medians_ms({"dense": lambda: test(dense), "size": lambda: test(size_model),
                                    "size routed": lambda: test(routed_model),
                                    "latency": lambda: test(latency_model)}, repeats=args.repeats, warmup=1)

    def summary(result, name):
        best = result.best
        return {"budget": result.config.budget, "budget_metric": result.config.budget_metric,
                "ranks": None if best is None else list(best.ranks),
                "size_ratio": None if best is None else best.size_ratio,
                "search_wer": None if best is None else best.search_wer,
                "test_wer": None if best is None else best.test_wer,
                "measured_ms": timed[name], "speedup": timed["dense"] / timed[name]}

    return {"agent": args.agent, "evaluations": args.evaluations, "seed": args.seed,
            "test_utterances_for_wer": args.search_test_utterances, "dense_ms": timed["dense"],
            "dense_test_wer": size.baseline_test_wer,
            "size_search": summary(size, "size"), "latency_search": summary(latency, "latency"),
            "size_search_fastest_routes": {"routes": routes, "measured_ms": timed["size routed"],
                                           "speedup": timed["dense"] / timed["size routed"]}}


def _exported(result) -> torch.nn.Module:
    from asr.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(result.run_dir / "model.pt")
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=1, help="utterances per call (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--random-configs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--test-utterances", type=int, default=40, help="test utterances timed end to end")
    p.add_argument("--agent", default="greedy", help="agent of both searches (default: %(default)s)")
    p.add_argument("--evaluations", type=int, default=60)
    p.add_argument("--sizes", default="0.5,0.3", help="size budgets of the search comparison (default: %(default)s)")
    p.add_argument("--factorisation", default="whitened", help="of the table's checks and both searches")
    p.add_argument("--search-test-utterances", type=int, default=500, help="test utterances for the searches' test WER")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-search", action="store_true", help="only predicted vs measured")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--output-dir", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        apply_quick_defaults(p, args, QUICK)
    args.sizes = parse_size_ratios(p, args.sizes)
    set_threads(args.threads)
    started = time.perf_counter()
    kit = make_search_target("default", test_utterances=args.search_test_utterances)
    env = ShrinkMLEnv(target=kit.target, budget=1.0, budget_metric="latency", latency_batch=args.batch,
                      factorisation=args.factorisation)
    rows = predicted_vs_measured(env, args)
    compressed = [r for r in rows if r["config"] != "dense"]
    errors = [abs(r["prediction_error"]) for r in rows]
    ratio_errors = [abs(r["ratio_error"]) for r in compressed]
    test_errors = [abs(r["test_prediction_error"]) for r in compressed]
    payload: dict[str, Any] = {
        "meta": run_metadata(benchmark="latency", batch=args.batch, repeats=args.repeats,
                             test_utterances=args.test_utterances, seconds=None),
        "table": {"dense_ms": env.latency.dense_ms, "rest_ms": env.latency.rest_ms,
                  "rest_share": env.latency.rest_ms / env.latency.dense_ms,
                  "smallest_ratio": env.costs.smallest_ratio(), "key": env.latency.to_dict()["key"],
                  "unit_costs_ms": env.costs.unit_costs.round(3).tolist()},
        "configurations": rows,
        "prediction": {"median_abs_error": statistics.median(errors), "max_abs_error": max(errors),
                       "median_abs_ratio_error": statistics.median(ratio_errors),
                       "max_abs_ratio_error": max(ratio_errors),
                       "within_10_percent": sum(e <= 0.10 for e in ratio_errors), "compressed": len(ratio_errors),
                       "test_median_abs_error": statistics.median(test_errors),
                       "test_max_abs_error": max(test_errors)},
    }
    write_output("latency.json", payload, args.output_dir)  # kept even if the searches fail
    if not args.no_search:
        payload["search"] = []
        for budget in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                payload["search"].append(search_comparison(kit, env, args, budget, Path(tmp)))
            write_output("latency.json", payload, args.output_dir)
    payload["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    path = write_output("latency.json", payload, args.output_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
