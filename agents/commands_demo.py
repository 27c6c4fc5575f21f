"""``shrinkml demo``: the default rank search on the shipped recogniser, in a few minutes.

The demo runs ``shrinkml search --budget 0.3`` with the search's defaults (PPO warm-started
from the sensitivity scan, steered by the ``distill`` score, the ``linear8`` menu,
activation-aware SVD: the choices ``benchmarks/results/search.json`` measured best on the
dev pool) and ends with one table: the dense model's test WER, the searched configuration's
size and test WER, and uniform compression (the same rank fraction everywhere, the paper's
manual baseline) at the same budget and at the searched configuration's own size. The
evaluation budget, 100, is sized for 2 CPU cores: one search-subset evaluation of the shipped
model takes about 1-2 s at two threads (``benchmarks/results/subset.json``). Measured
2026-12-07 on this 2-core machine (corpus already synthesised): 259 s in all; on 500 test
utterances the search's choice (size 0.296) scored 0.369 against 0.396 for uniform ranks at
the same size and 0.424 at the budget's uniform fraction (dense 0.290).

Until 2026-12-07 the demo used the ``budget7`` menu, which had been chosen after looking at
test results on an older checkpoint; it now shows exactly what ``shrinkml search`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["DEMO_EVALUATIONS", "register"]

DEMO_EVALUATIONS = 100


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="PPO rank search on the shipped recogniser; size and test WER vs uniform")
    p.add_argument("--budget", type=float, default=0.3, help="size ratio of the compressible parameters to reach")
    p.add_argument("--evaluations", type=int, default=DEMO_EVALUATIONS, help="unique search-subset evaluations")
    p.add_argument("--test-utterances", type=int, default=500, help="test utterances decoded")
    p.add_argument("--seed", type=int, default=0)
    from agents.commands_search import SCORE_DEFAULT
    from agents.config import SearchConfig

    d = SearchConfig()
    p.add_argument("--rank-menu", default=d.rank_menu, help="rank menu preset (default: %(default)s, as `shrinkml search`)")
    p.add_argument("--target", default="default", help="'default' (shipped model), an ASR checkpoint, or 'toy'")
    p.add_argument("--score", help=f"search-subset score: wer, cer, loss or distill ({SCORE_DEFAULT})")
    p.add_argument("--factorisation", default=d.factorisation, help="plain, whitened or sequential (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory (rerun resumes)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from agents.commands_search import search_progress_bar
    from agents.config import SearchConfig
    from agents.search import run_search

    config = SearchConfig(
        agent="ppo", budget=args.budget, evaluations=args.evaluations, seed=args.seed,
        target=args.target, test_utterances=args.test_utterances, rank_menu=args.rank_menu,
        score=args.score,
        factorisation=args.factorisation,
    )
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.target == "default":  # a first run synthesises the corpus splits it scores on
        from agents.commands_asr import _progress_bar
        from asr.corpus import ensure_corpus

        bar = None if args.quiet else _progress_bar("synthesising dev and test speech (first run only)", "utt")
        ensure_corpus(progress=bar, splits=("dev", "test"))
    update, close = (None, lambda: None) if args.quiet else search_progress_bar(config.evaluations, config.score)
    try:
        result = run_search(config, args.out, progress=update)
    finally:
        close()
    rows = [("dense (shipped)", 1.0, result.dense_model_params, result.baseline_search_wer, result.baseline_test_wer)]
    candidates = ((f"{result.uniform.label} of full rank", result.uniform),
                  (result.uniform_at_size and result.uniform_at_size.label, result.uniform_at_size),
                  ("ShrinkML PPO search", result.best))
    for label, c in candidates:
        if c is not None:
            rows.append((label, c.size_ratio, c.model_params, c.search_wer, c.test_wer))
    print(f"\nShrinkML demo: budget {config.budget}, rank menu {config.rank_menu}, {config.factorisation} factorisation, "
          f"{result.evaluations} search evaluations, {config.test_utterances} test utterances")
    column = "search WER" if config.score == "wer" else f"search {config.score}"
    print(f"{'model':32s} {'size ratio':>10s} {'parameters':>11s} {column:>10s} {'test WER':>9s}")
    for name, ratio, params, search_wer, test_wer in rows:
        print(f"{name:32s} {ratio:10.3f} {params:11,d} {search_wer:10.4f} {test_wer:9.4f}")
    print(f"\nrun directory: {result.run_dir} (report.md, pareto.png, exported model.pt); "
          f"{time.perf_counter() - started:.0f} s in all")
    uniform = result.uniform
    print(json.dumps({
        "budget": config.budget,
        "rank_menu": config.rank_menu,
        "factorisation": config.factorisation,
        "evaluations": result.evaluations,
        "dense_test_wer": result.baseline_test_wer,
        "uniform": {"size_ratio": uniform.size_ratio, "test_wer": uniform.test_wer},
        "uniform_at_size": None if result.uniform_at_size is None else {
            "size_ratio": result.uniform_at_size.size_ratio, "test_wer": result.uniform_at_size.test_wer},
        "search": None if result.best is None else {"size_ratio": result.best.size_ratio, "test_wer": result.best.test_wer},
    }), file=sys.stderr)
    return 0
