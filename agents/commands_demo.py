"""``shrinkml demo``: the main job on the embedded default.

Until the RL search lands, the demo runs the most complete pipeline that exists: the shipped
recogniser, its baseline test WER, uniform SVD compression at the budget (the paper's manual
baseline) built through ``ShrinkML-v0``'s plan, exported as a truly factorised model, and its
test WER and size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="compress the shipped recogniser and report size and test WER")
    p.add_argument("--budget", type=float, default=0.3, help="size ratio of the compressible parameters to reach")
    p.add_argument("--test-utterances", type=int, default=500, help="test utterances decoded (0: all)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="where the exported model goes")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from agents.commands_asr import _progress_bar
    from asr.checkpoint import load_checkpoint, save_factorised_asr
    from asr.data import prepare_feature_batches
    from asr.default import default_checkpoint, load_split
    from asr.evaluate import evaluate_batches
    from asr.features import LogMelFrontend
    from asr.target import default_target
    from shrinkml_env.compression import describe_layers, export_factorised
    from shrinkml_env.env import ShrinkMLEnv

    started = time.perf_counter()
    target = default_target()
    env = ShrinkMLEnv(target=target, budget=args.budget)
    plan = env.plan
    uniform = max(
        (a for a in range(env.menu.size) if plan.unit_params[:, a].sum() <= args.budget * plan.dense_total),
        default=None,
    )
    if uniform is None:
        raise ValueError(f"no uniform rank fraction reaches budget {args.budget}; raise --budget")
    ranks = plan.ranks([uniform] * env.steps)
    test = load_split("test", _progress_bar("synthesising corpus", "utt"))
    if args.test_utterances:
        test = test[: args.test_utterances]
    model, tokenizer, _ = load_checkpoint(default_checkpoint())
    batches = prepare_feature_batches(test, LogMelFrontend(), tokenizer)
    dense = evaluate_batches(model, tokenizer, batches)
    layers = describe_layers(model, target.layers)
    exported = export_factorised(model, layers, plan.rank_map(ranks), plan.bank)
    compressed = evaluate_batches(exported, tokenizer, batches)
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / f"uniform_{args.budget}.pt"
    size_ratio = plan.params(ranks) / plan.dense_total
    save_factorised_asr(out_file, exported, tokenizer, {"ranks": plan.rank_map(ranks), "size_ratio": size_ratio})
    rows = [
        ("dense (shipped)", 1.0, sum(p.numel() for p in model.parameters()), dense.wer),
        (
            f"uniform {env.menu.fraction(uniform):.4g} of full rank",
            size_ratio,
            sum(p.numel() for p in exported.parameters()),
            compressed.wer,
        ),
    ]
    print(f"\nShrinkML demo: budget {args.budget}, {len(test)} test utterances")
    print(f"{'model':34s} {'size ratio':>10s} {'parameters':>11s} {'test WER':>9s}")
    for name, ratio, params, wer in rows:
        print(f"{name:34s} {ratio:10.3f} {params:11,d} {wer:9.4f}")
    print(f"\nexported factorised model: {out_file}")
    print(f"search-subset baseline WER {target.baseline_error:.4f}; {time.perf_counter() - started:.0f} s in all")
    print(json.dumps({"budget": args.budget, "uniform_fraction": env.menu.fraction(uniform),
                      "size_ratio": size_ratio, "dense_test_wer": dense.wer,
                      "uniform_test_wer": compressed.wer}), file=sys.stderr)
    return 0

