"""Does a search steered by a quieter score end at better configurations? Measured on dev.

``bench_scores`` shows which search-subset score ranks same-size configurations like a large
held-out set does; this runs the searches themselves. For every budget, seed and score
(``--scores``, default ``wer`` and ``distill``), one ``--agent`` search of ``--evaluations``
unique evaluations of the shipped model; each search's best configuration (its exported,
factorised model) is then decoded greedily on the **dev pool** (dev utterances from
``--pool-start``, which neither the search subset nor the calibration set comes from): the
design choice is made on that. Test WER (first ``--test`` utterances) is reported beside it.
Paired per seed and budget, the dev-pool WER difference (score minus ``wer``) tells whether
steering by the score pays.

Writes ``benchmarks/results/search_score.json``; run directories go under ``--out``
(resumable: a finished search is read back, not repeated). Run:
``python -m benchmarks.bench_search_score``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from agents.config import SearchConfig
from agents.run_dir import RunDir
from agents.search import run_search
from agents.targets import make_search_target
from asr.checkpoint import load_checkpoint
from asr.data import prepare_feature_batches
from asr.default import default_checkpoint, load_split
from asr.evaluate import evaluate_batches
from asr.features import LogMelFrontend
from benchmarks.common import RESULTS, run_metadata, write_result
from benchmarks.search_study import parse_floats, parse_ints, parse_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scores", default="wer,distill")
    parser.add_argument("--budgets", default="0.3,0.5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--agent", default="tpe")
    parser.add_argument("--evaluations", type=int, default=100)
    parser.add_argument("--pool-start", type=int, default=600)
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("runs/search-score"))
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    scores, budgets, seeds = parse_names(args.scores), parse_floats(args.budgets), parse_ints(args.seeds)
    if "wer" not in scores:
        parser.error(f"--scores must include wer (the reference every other score is set against); got {args.scores!r}")

    rows = []
    pool_batches = None
    for score in scores:
        kit = make_search_target("default", test_utterances=args.test, score=score)
        if pool_batches is None:
            tokenizer = load_checkpoint(default_checkpoint())[1]
            pool = load_split("dev")[args.pool_start : args.pool_start + args.pool]
            pool_batches = prepare_feature_batches(pool, LogMelFrontend(), tokenizer)
        for budget in budgets:
            for seed in seeds:
                config = SearchConfig(agent=args.agent, budget=budget, evaluations=args.evaluations, seed=seed,
                                      test_utterances=args.test, score=score)
                run_dir = args.out / f"{score}-b{budget}-s{seed}"
                result = run_search(config, run_dir, kit)
                model, tokenizer, _ = load_checkpoint(RunDir(run_dir).model_file)
                dev_wer = evaluate_batches(model, tokenizer, pool_batches).wer
                rows.append({"score": score, "budget": budget, "seed": seed, "size_ratio": result.best.size_ratio,
                             "dev_pool_wer": dev_wer, "test_wer": result.best.test_wer,
                             "search_score": result.best.search_wer, "seconds": result.seconds})
                print(f"{score} budget {budget} seed {seed}: dev pool {dev_wer:.4f} test {result.best.test_wer:.4f} "
                      f"size {result.best.size_ratio:.3f}", file=sys.stderr)

    summary = {}
    for budget in budgets:
        by = {(r["score"], r["seed"]): r for r in rows if r["budget"] == budget}
        for score in scores:
            mine = [by[(score, s)] for s in seeds]
            entry = {"dev_pool_wer_median": statistics.median(r["dev_pool_wer"] for r in mine),
                     "test_wer_median": statistics.median(r["test_wer"] for r in mine)}
            if score != "wer":
                entry["dev_pool_minus_wer_score"] = [by[(score, s)]["dev_pool_wer"] - by[("wer", s)]["dev_pool_wer"]
                                                     for s in seeds]
            summary[f"{budget}/{score}"] = entry
    result = {**run_metadata(), "agent": args.agent, "evaluations": args.evaluations, "seeds": list(seeds),
              "dev_pool": [args.pool_start, args.pool_start + args.pool], "test_utterances": args.test,
              "summary": summary, "runs": rows}
    print(write_result("search_score.json", result, args.output_dir))
    for key, entry in summary.items():
        print(key, {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v]) for k, v in entry.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
