"""Which search-subset score ranks configurations of one size best, and at what cost.

A search must tell apart configurations of the *same* size whose WER differs by a point or
two; sizes far apart are ranked right by any score. For each size band (``--sizes``) this
draws ``--configs`` random per-layer allocations of the shipped model whose size ratio lies
within ±``--band`` of it, and scores each one

* on the shipped search subset by every score of :mod:`asr.scores` (``wer``, ``cer``,
  ``loss``, ``distill``), timing each (one warm run, then the median of ``--repeats``);
* by greedy WER on a **dev pool** the subset was not chosen from (dev utterances from
  ``--pool-start`` on; the subset was selected among the first 600): the reference a design
  choice is made against;
* by greedy WER on the first ``--test`` test utterances: reported, never used to choose.

Per band and score: the Spearman rank correlation with dev-pool WER (and a bootstrap 90 %
interval over configurations) and with test WER, over all configurations and over the
better half by dev-pool WER (the competitive ones a search ends among, where ranking is
hard). The verdict names the score with the highest mean better-half dev-pool Spearman over
the bands; seconds are medians measured in this run, side by side.

Writes ``benchmarks/results/scores.json``. Run: ``python -m benchmarks.bench_scores``
(``--quick`` for a small smoke run into ``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from asr.checkpoint import load_checkpoint
from asr.data import prepare_feature_batches
from asr.default import default_checkpoint, load_split
from asr.evaluate import evaluate_batches
from asr.features import LogMelFrontend
from asr.scores import SCORES, make_scorer
from asr.subset import spearman
from asr.target import asr_target
from benchmarks.bench_subset import probe_actions
from benchmarks.common import (
    RESULTS,
    apply_quick_defaults,
    parse_size_ratios,
    run_metadata,
    write_result,
)
from shrinkml_env.plan import CompressionPlan
from shrinkml_env.search_space import DEFAULT_MENU

QUICK = {"configs": 4, "pool": 40, "test": 40, "sizes": "0.3", "repeats": 1, "output_dir": RESULTS / "quick"}


def bootstrap_spearman(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, draws: int = 1000) -> list[float]:
    """5th and 95th percentiles of Spearman over configurations resampled with replacement."""
    values = []
    for _ in range(draws):
        pick = rng.integers(0, len(a), len(a))
        if np.ptp(a[pick]) == 0 or np.ptp(b[pick]) == 0:
            continue
        values.append(spearman(a[pick], b[pick]))
    return [float(np.percentile(values, 5)), float(np.percentile(values, 95))] if values else [float("nan")] * 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="0.3,0.5", help="comma-separated size ratios (default: %(default)s)")
    parser.add_argument("--band", type=float, default=0.01, help="half-width of each size band")
    parser.add_argument("--configs", type=int, default=16, help="random allocations per size band")
    parser.add_argument("--pool-start", type=int, default=600, help="first dev index of the reference pool")
    parser.add_argument("--pool", type=int, default=400, help="dev utterances in the reference pool")
    parser.add_argument("--test", type=int, default=400, help="test utterances decoded per configuration (report only)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per score (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument("--resummarise", type=Path, metavar="SCORES_JSON",
                        help="recompute the summaries of a finished run from its stored rows; decodes nothing")
    args = parser.parse_args(argv)
    if args.resummarise is not None:
        report(resummarise(args.resummarise, args.seed))
        return 0
    if args.quick:
        apply_quick_defaults(parser, args, QUICK)
    sizes = parse_size_ratios(parser, args.sizes)
    if args.configs < 3:
        parser.error(f"--configs must be >= 3 (a rank correlation needs them); got {args.configs}")

    checkpoint = default_checkpoint()
    model, tokenizer, _ = load_checkpoint(checkpoint)
    frontend = LogMelFrontend()
    subset = prepare_feature_batches(load_split("search"), frontend, tokenizer)
    dev = load_split("dev")
    pool = prepare_feature_batches(dev[args.pool_start : args.pool_start + args.pool], frontend, tokenizer)
    test = prepare_feature_batches(load_split("test")[: args.test], frontend, tokenizer)
    scorers = {name: make_scorer(name, model, tokenizer, subset) for name in SCORES}
    plan = CompressionPlan(asr_target(checkpoint, dev[:1]), DEFAULT_MENU, "layer")
    rng = np.random.default_rng(args.seed)

    def timed(fn) -> tuple[float, float]:
        value = fn(plan.search_model.model)  # warm run
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn(plan.search_model.model)
            seconds.append(time.perf_counter() - start)
        return value, statistics.median(seconds)

    bands = []
    for size in sizes:
        probes = probe_actions(plan, args.configs, rng, (size - args.band, size + args.band))
        rows = []
        for c, actions in enumerate(probes):
            ranks = plan.ranks(actions)
            plan.search_model.apply(plan.rank_map(ranks))
            row = {"actions": actions, "size_ratio": plan.params(ranks) / plan.dense_total, "scores": {}, "seconds": {}}
            for name, scorer in scorers.items():
                row["scores"][name], row["seconds"][name] = timed(scorer)
            row["dev_pool_wer"] = evaluate_batches(plan.search_model.model, tokenizer, pool).wer
            row["test_wer"] = evaluate_batches(plan.search_model.model, tokenizer, test).wer
            rows.append(row)
            print(
                f"size {size} config {c + 1}/{len(probes)}: dev pool {row['dev_pool_wer']:.4f} test "
                f"{row['test_wer']:.4f} " + " ".join(f"{k} {v:.4f}" for k, v in row["scores"].items()),
                file=sys.stderr,
            )
        bands.append(band_summary(size, rows, args.seed))

    result = {
        **run_metadata(),
        "checkpoint": checkpoint.name,
        "search_subset_utterances": sum(len(b.ids) for b in subset),
        "dev_pool": [args.pool_start, args.pool_start + args.pool],
        "test_utterances": args.test,
        "configs_per_size": args.configs,
        "band": args.band,
        **verdict(bands),
        "bands": bands,
    }
    print(write_result("scores.json", result, args.output_dir))
    report(result)
    return 0


def band_summary(size: float, rows: list[dict], seed: int) -> dict:
    """Per score: Spearman with dev-pool WER (bootstrap 90 % interval) and with test WER,
    over all configurations of the band and over its better half by dev-pool WER (the
    competitive configurations a search ends among), and the median seconds."""
    dev_wer = np.array([r["dev_pool_wer"] for r in rows])
    test_wer = np.array([r["test_wer"] for r in rows])
    better = dev_wer <= np.median(dev_wer)
    per_score = {}
    for name in SCORES:
        values = np.array([r["scores"][name] for r in rows])
        per_score[name] = {
            "spearman_dev_pool": spearman(values, dev_wer),
            "spearman_dev_pool_90ci": bootstrap_spearman(values, dev_wer, np.random.default_rng(seed)),
            "spearman_test": spearman(values, test_wer),
            "better_half_spearman_dev_pool": spearman(values[better], dev_wer[better]),
            "better_half_spearman_test": spearman(values[better], test_wer[better]),
            "seconds_median": statistics.median(r["seconds"][name] for r in rows),
        }
    return {
        "size": size,
        "dev_pool_wer_range": [float(dev_wer.min()), float(dev_wer.max())],
        "test_wer_range": [float(test_wer.min()), float(test_wer.max())],
        "dev_pool_vs_test_spearman": spearman(dev_wer, test_wer),
        "better_half_configs": int(better.sum()),
        "scores": per_score,
        "configs": rows,
    }


def verdict(bands: list[dict]) -> dict:
    """The score with the highest mean dev-pool Spearman over the bands' better halves
    (where the ranking is hard), ties broken by all configurations."""
    def mean(key: str) -> dict[str, float]:
        return {n: statistics.fmean(b["scores"][n][key] for b in bands) for n in SCORES}

    halves, whole = mean("better_half_spearman_dev_pool"), mean("spearman_dev_pool")
    best = max(SCORES, key=lambda n: (halves[n], whole[n]))
    return {"mean_spearman_dev_pool": whole, "mean_better_half_spearman_dev_pool": halves, "chosen_on_dev": best}


def report(result: dict) -> None:
    for b in result["bands"]:
        print(f"size {b['size']} (dev pool WER {b['dev_pool_wer_range'][0]:.3f}-{b['dev_pool_wer_range'][1]:.3f}):")
        for n, s in b["scores"].items():
            print(f"  {n:8s} rho dev {s['spearman_dev_pool']:.3f} (better half {s['better_half_spearman_dev_pool']:.3f}) "
                  f"rho test {s['spearman_test']:.3f} (better half {s['better_half_spearman_test']:.3f}) "
                  f"{s['seconds_median']:.2f} s")
    print(f"chosen on dev: {result['chosen_on_dev']}")


def resummarise(path: Path, seed: int = 0) -> dict:
    """Recompute every summary of a ``scores.json`` from its stored per-configuration rows
    (no decoding), and write it back."""
    result = json.loads(Path(path).read_text())
    result["bands"] = [band_summary(b["size"], b["configs"], seed) for b in result["bands"]]
    result.update(verdict(result["bands"]))
    write_result(Path(path).name, result, Path(path).parent)
    return result


if __name__ == "__main__":
    sys.exit(main())
