"""Run every benchmark; ``--quick`` runs the short versions (``make bench``, at most 20 minutes
on 2 CPU cores: each step's seconds are printed and the total ends the log).

The full versions write to ``benchmarks/results/`` (the committed figures the READMEs quote);
the quick ones write to ``benchmarks/results/quick/`` (not in git), so a quick check never
overwrites a full result. Each script's own ``--output-dir`` does the same by hand.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

QUICK_DIR = Path(__file__).resolve().parent / "results" / "quick"

QUICK = [
    ["benchmarks.bench_lowrank", "--quick", "--output", str(QUICK_DIR / "lowrank.json")],
    ["benchmarks.bench_model", "--limit", "100", "--joint-limit", "20", "--repeats", "1"],
    ["benchmarks.bench_env", "--repeats", "100"],
    ["benchmarks.bench_subset", "--pool", "300", "--select-configs", "6", "--eval-configs", "16"],
    ["benchmarks.bench_search", "--quick", "--budgets", "0.3"],  # the budget the acceptance is judged at
    ["benchmarks.bench_rewards", "--quick"],
    ["benchmarks.bench_search_space", "--quick"],
    ["benchmarks.bench_inference", "--quick", "--budgets", "0.3"],  # after bench_search: exports its best_known
    ["benchmarks.bench_scaling", "--quick"],
    ["benchmarks.bench_scores", "--quick"],
    ["benchmarks.bench_methods", "--quick"],
    ["benchmarks.bench_workers", "--quick"],
    ["benchmarks.bench_train_parallel", "--quick"],
]
FULL = [
    ["benchmarks.bench_lowrank"],
    ["benchmarks.bench_model"],
    ["benchmarks.bench_resample"],
    ["benchmarks.bench_reverb"],  # these two need the 'compare' extra (make bench-full installs it)
    ["benchmarks.bench_noise"],
    ["benchmarks.bench_train_precision"],
    ["benchmarks.bench_env"],
    ["benchmarks.bench_subset"],
    ["benchmarks.bench_search"],
    ["benchmarks.bench_rewards"],
    ["benchmarks.bench_search_space"],
    ["benchmarks.bench_inference"],
    ["benchmarks.bench_scaling"],
    ["benchmarks.bench_scores"],
    ["benchmarks.bench_search_score"],
    ["benchmarks.bench_methods"],
    ["benchmarks.bench_distill", "--threads", "2"],
    ["benchmarks.bench_workers"],
    ["benchmarks.bench_train_parallel"],
    ["benchmarks.bench_latency", "--threads", "2"],
    ["benchmarks.bench_headline", "--threads", "2", "--seeds", "0"],  # the README's first table (greedy: deterministic)
    ["benchmarks.bench_agent_choice", "--threads", "2"],  # ppo and greedy, 3 seeds each, on the dev pool
    ["benchmarks.bench_agent_tuning", "--jobs", "2"],  # warm PPO's entropy and learning rate, on the dev pool
    ["benchmarks.bench_agent_tuning", "--jobs", "2", "--grid", "ent_coef=0.01", "--grid", "learning_rate=1e-3",
     "--grid", "score=wer,distill", "--result-name", "agent_tuning_score"],  # its search score, on the dev pool
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    failed = []
    started = time.perf_counter()
    for module, *rest in QUICK if args.quick else FULL:
        if args.quick and module != "benchmarks.bench_lowrank":
            rest = [*rest, "--output-dir", str(QUICK_DIR)]
        print(f"== {module} {' '.join(rest)}", flush=True)
        begun = time.perf_counter()
        if subprocess.run([sys.executable, "-m", module, *rest]).returncode != 0:
            failed.append(module)
        print(f"== {module}: {time.perf_counter() - begun:.0f} s", flush=True)
    print(f"== all: {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
