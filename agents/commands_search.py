"""``shrinkml search``, ``shrinkml export`` and ``shrinkml report``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from agents.commands_finetune import add_iterative_arguments, run_iterative_command
from agents.config import AGENTS, DEFAULT_SCORE, SearchConfig, parse_sb3_overrides, read_sb3_config

__all__ = ["register", "search_config_from_args", "search_progress_bar"]

# How --score defaults, for every command that takes one (the rule itself: SearchConfig.score).
SCORE_DEFAULT = f"default: {DEFAULT_SCORE}; wer on 'toy'"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search per-layer SVD ranks under a size (or latency) budget")
    add_search_arguments(p)
    add_iterative_arguments(p)
    p.add_argument("--out", type=Path, help="run directory (default: runs/search/AGENT-bBUDGET-sSEED); "
                   "rerunning on it resumes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_search)

    p = sub.add_parser("export", help="copy a run's exported factorised model")
    p.add_argument("run_dir", type=Path, help="a finished run directory")
    p.add_argument("--out", type=Path, required=True, help="model file to write")
    p.set_defaults(handler=_export)

    p = sub.add_parser("report", help="compare finished runs in one table and one plot")
    p.add_argument("run_dirs", type=Path, nargs="+", help="run directories")
    p.add_argument("--plot", type=Path, default=Path("comparison.png"), help="plot file to write")
    p.add_argument("--out", type=Path, help="also write the table to this markdown file")
    p.set_defaults(handler=_report)


def add_search_arguments(p: argparse.ArgumentParser) -> None:
    """The options that build a :class:`SearchConfig`."""
    d = SearchConfig()
    p.add_argument("--agent", default=d.agent, help=f"one of {', '.join(AGENTS)}")
    p.add_argument("--budget", type=float, default=d.budget, help="size ratio of the compressible parameters to reach, in (0, 1]")
    p.add_argument("--latency-budget", type=float, metavar="RATIO",
                   help="budget predicted latency instead of size: this fraction of the dense model's, in (0, 1], "
                   "from a per-layer latency table measured once on this machine (replaces --budget)")
    p.add_argument("--batch", type=int, default=d.latency_batch,
                   help="utterances per call when latency is measured (with --latency-budget; default: %(default)s)")
    p.add_argument("--reward", default=d.reward, help="env reward name (wer_size, budget_wer, accuracy_guaranteed, amc, linear)")
    p.add_argument("--evaluations", type=int, default=d.evaluations,
                   help="unique search-subset evaluations to spend (cache hits are free)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--target", default=d.target, help="'default' (shipped model), 'toy' (seconds; tests) or an ASR checkpoint")
    p.add_argument("--constraint", help="clamp, mask or punish (default: mask for maskable_ppo, else clamp)")
    p.add_argument("--rank-menu", default=d.rank_menu, help="rank menu preset (linear8, linear4, linear16, geometric6, full_range8, budget7: centred on the budget)")
    p.add_argument("--granularity", default=d.granularity, help="one action per 'layer' or per 'matrix'")
    p.add_argument("--warmup-episodes", type=int, help="random episodes before learning (default: per agent)")
    p.add_argument("--max-episodes", type=int, help="give up after this many episodes, cache hits included (default: 20 x evaluations)")
    p.add_argument("--sb3", action="append", default=[], metavar="NAME=VALUE",
                   help="SB3 hyperparameter override, repeatable (e.g. --sb3 learning_rate=3e-4 --sb3 'policy_kwargs={\"net_arch\": [32]}')")
    p.add_argument("--sb3-config", type=Path, help="JSON object of SB3 hyperparameters (--sb3 wins over it)")
    p.add_argument("--tensorboard", type=Path, help="log SB3 training to TensorBoard in this folder")
    p.add_argument("--test-utterances", type=int, help="test utterances decoded for the test WER (default: all)")
    p.add_argument("--device", default=d.device, help="torch device")
    p.add_argument("--score",
                   help="what the search steers by on the search subset: wer (greedy decoding), cer, loss "
                   "(teacher-forced cross-entropy of the references) or distill (against the dense model); "
                   f"results are always test WER ({SCORE_DEFAULT})")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="evaluate on this many Ray workers (needs the 'ray' extra; default: %(default)s, in this process)")
    p.add_argument("--ray-address", help="join this Ray cluster (e.g. 'auto' or ray://host:10001) instead of starting one")
    p.add_argument("--worker-threads", type=int, default=d.worker_threads, help="torch threads per worker (default: %(default)s)")
    p.add_argument("--worker-gpus", type=float, default=d.worker_gpus,
                   help="GPUs per worker, fractions allowed (0.25: four per GPU; with --device cuda) (default: %(default)s)")
    p.add_argument("--factorisation", default=d.factorisation,
                   help="plain (truncated SVD of each matrix) or whitened (activation-aware: minimises the "
                   "error of each matrix's outputs on calibration data; same exported structure) "
                   "or sequential (searches as whitened, then refits each exported model layer by layer "
                   "to the dense outputs given the compressed layers below) (default: %(default)s)")
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=None,
                   help="ppo, a2c, maskable_ppo: start from the sensitivity scan (its evaluations count), with "
                   "each layer's sensitivity in the observation and the policy taught the allocation it predicts "
                   "best (default: on for those agents; --no-warm-start for the plain agent)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def search_config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The one place the command line becomes a :class:`SearchConfig`."""
    sb3 = read_sb3_config(args.sb3_config) if args.sb3_config else ()
    sb3 = tuple(sb3) + parse_sb3_overrides(args.sb3)
    return SearchConfig(
        agent=args.agent,
        budget=args.budget if args.latency_budget is None else args.latency_budget,
        budget_metric="size" if args.latency_budget is None else "latency",
        latency_batch=args.batch,
        reward=args.reward,
        evaluations=args.evaluations,
        seed=args.seed,
        target=args.target,
        constraint=args.constraint,
        rank_menu=args.rank_menu,
        granularity=args.granularity,
        warmup_episodes=args.warmup_episodes,
        max_episodes=args.max_episodes,
        sb3=sb3,
        test_utterances=args.test_utterances,
        device=args.device,
        score=args.score,
        factorisation=args.factorisation,
        warm_start=args.warm_start,
        workers=args.workers,
        ray_address=args.ray_address,
        worker_threads=args.worker_threads,
        worker_gpus=args.worker_gpus,
        tensorboard=None if args.tensorboard is None else str(args.tensorboard),
    )


def search_progress_bar(total: int, score: str = "wer") -> tuple[Callable, Callable[[], None]]:
    """A tqdm bar of evaluations with best reward, best ``score`` within budget and cache hits."""
    from tqdm import tqdm

    bars: list[tqdm] = []  # created on the first report, so a refused search draws no bar

    def update(progress) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="evaluations", unit="eval", file=sys.stderr, dynamic_ncols=True))
        shown = {"hits": progress.cache_hits, "episodes": progress.episodes}
        if progress.best_reward is not None:
            shown["best_reward"] = f"{progress.best_reward:.3f}"
        if progress.best_wer is not None:
            shown[f"best_{score}@budget"] = f"{progress.best_wer:.4f}"
        bars[0].set_postfix(shown, refresh=False)
        bars[0].update(progress.evaluations - bars[0].n)

    def close() -> None:
        if bars:
            bars[0].close()

    return update, close


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1; got {threads}")
        import torch

        torch.set_num_threads(threads)


def _search(args: argparse.Namespace) -> int:
    from agents.search import run_search

    if args.iterative:
        return run_iterative_command(args)
    config = search_config_from_args(args)
    _set_threads(args.threads)
    out = args.out or Path("runs/search") / f"{config.agent}-b{config.budget:g}-s{config.seed}"
    update, close = (None, lambda: None) if args.quiet else search_progress_bar(config.evaluations, config.score)
    try:
        result = run_search(config, out, progress=update)
    finally:
        close()
    if args.json:
        print(json.dumps(result.summary()))
        return 0
    column = "search WER" if config.score == "wer" else f"search {config.score}"
    print(f"\n{'model':30s} {'size ratio':>10s} {'parameters':>11s} {column:>10s} {'test WER':>9s}")
    print(f"{'dense':30s} {1.0:10.3f} {result.dense_model_params:11,d} {result.baseline_search_wer:10.4f} "
          f"{result.baseline_test_wer:9.4f}")
    for c in (result.uniform, result.best):
        if c is not None:
            print(f"{c.label:30s} {c.size_ratio:10.3f} {c.model_params:11,d} {c.search_wer:10.4f} {c.test_wer:9.4f}")
    if result.latency is not None:
        t = result.latency
        print(f"\nlatency of the exported model, batch {t['batch_size']}: predicted {t['predicted_ratio']:.3f} of dense, "
              f"measured {t['measured_ratio']:.3f} ({t['exported_ms']:.1f} against {t['dense_ms']:.1f} ms)")
    print(f"\n{result.evaluations} evaluations ({result.new_evaluations} new), stopped: {result.stop_reason}; "
          f"run directory: {result.run_dir} (report.md, pareto.png, model.pt)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from agents.run_dir import RunDir, atomic_write_bytes

    run = RunDir(args.run_dir)
    if not run.model_file.is_file():
        raise FileNotFoundError(
            f"{run.model_file} does not exist: {str(run.path)!r} is not a finished run directory "
            "(rerun its `shrinkml search` command to finish it)"
        )
    atomic_write_bytes(args.out, run.model_file.read_bytes())
    print(f"wrote {args.out} (the run's best configuration, factorised)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from agents.report import compare_runs
    from agents.run_dir import atomic_write_text

    table = compare_runs(args.run_dirs, args.plot)
    if args.out is not None:
        atomic_write_text(args.out, table)
    print(table, end="")
    print(f"\nplot: {args.plot}")
    return 0
