"""Run every benchmark; ``--quick`` runs the short versions (``make bench``)."""

from __future__ import annotations

import argparse
import subprocess
import sys

QUICK = [
    ["benchmarks.bench_lowrank", "--quick"],
    ["benchmarks.bench_env", "--repeats", "100"],
    ["benchmarks.bench_subset", "--pool", "500", "--select-configs", "12", "--eval-configs", "30"],
    ["benchmarks.bench_search", "--quick"],
    ["benchmarks.bench_rewards", "--quick"],
    ["benchmarks.bench_search_space", "--quick"],
    ["benchmarks.bench_inference", "--quick"],  # after bench_search: exports its best_known
    ["benchmarks.bench_scaling", "--quick"],
]
FULL = [
    ["benchmarks.bench_lowrank"],
    ["benchmarks.bench_env"],
    ["benchmarks.bench_subset"],
    ["benchmarks.bench_search"],
    ["benchmarks.bench_rewards"],
    ["benchmarks.bench_search_space"],
    ["benchmarks.bench_inference"],
    ["benchmarks.bench_scaling"],
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    failed = []
    for module, *rest in QUICK if args.quick else FULL:
        print(f"== {module} {' '.join(rest)}", flush=True)
        if subprocess.run([sys.executable, "-m", module, *rest]).returncode != 0:
            failed.append(module)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
