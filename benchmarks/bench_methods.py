"""Factorisation methods against each other at equal ranks: test WER, paired, and bank cost.

For each size (``--sizes``), uniform compression of the shipped model (one rank fraction for
every matrix, the largest whose size ratio is at most the size) is exported, truly
factorised, with each method of :data:`~shrinkml_env.compression.svd.FACTORISATIONS`, and
decoded greedily on the test split (``--test`` utterances, default all). Each method is set
against ``plain`` on the same utterances with a paired bootstrap 95 % interval of the WER
difference (negative: the method is better). Also measured: seconds to compute each bank
(calibration pass and SVDs) for the whole model, and the search-subset WER of every
configuration (what a search would see), and its greedy WER on the **dev pool** (dev
utterances from ``--pool-start``, disjoint from the search subset and the calibration set):
the default method is chosen on the dev pool, and test is reported. ``--ranks RUN_DIR`` adds
the best configuration of a search run directory (its ranks, exported by every method), and
``--headline JSON`` the searched configurations of a ``bench_headline`` result.

The calibration set is the target's default (:mod:`asr.calibration`: the last 200 dev
utterances), checked disjoint from the search subset and the test split.

Writes ``benchmarks/results/methods.json``. Run: ``python -m benchmarks.bench_methods``
(``--quick``: 100 test utterances, one size, into ``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agents.targets import asr_search_target
from asr.calibration import check_calibration
from asr.checkpoint import load_checkpoint
from asr.data import prepare_feature_batches
from asr.default import default_checkpoint, load_split
from asr.evaluate import evaluate_batches
from asr.features import LogMelFrontend
from asr.metrics import paired_wer_difference
from benchmarks.common import (
    RESULTS,
    apply_quick_defaults,
    parse_size_ratios,
    run_metadata,
    write_result,
)
from shrinkml_env.compression import SVDBank, describe_layers, export_factorised
from shrinkml_env.compression.calibration import input_moments
from shrinkml_env.compression.ranks import uniform_ranks_at_size
from shrinkml_env.compression.sequential import fit_sequential
from shrinkml_env.compression.size import size_ratio
from shrinkml_env.compression.svd import FACTORISATIONS

BANK_METHODS = ("plain", "whitened")

QUICK = {"sizes": "0.3", "test": 100, "pool": 50, "output_dir": RESULTS / "quick"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="0.5,0.3,0.2", help="comma-separated size ratios (default: %(default)s)")
    parser.add_argument("--test", type=int, default=None, help="test utterances (default: the whole split)")
    parser.add_argument("--ranks", type=Path, action="append", default=[], metavar="RUN_DIR",
                        help="also compare the best configuration of this search run directory")
    parser.add_argument("--headline", type=Path, action="append", default=[], metavar="JSON",
                        help="also compare the searched configurations of this bench_headline result")
    parser.add_argument("--pool-start", type=int, default=600, help="first dev index of the dev pool")
    parser.add_argument("--pool", type=int, default=600, help="dev-pool utterances (ends before the calibration set)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick_defaults(parser, args, QUICK)
    sizes = parse_size_ratios(parser, args.sizes)

    kit = asr_search_target(test_utterances=args.test)
    target = kit.target
    pool = load_split("dev")[args.pool_start : args.pool_start + args.pool]
    check_calibration(target.calibrate.utterances, dev_pool=pool)
    tokenizer = load_checkpoint(default_checkpoint())[1]
    pool_batches = prepare_feature_batches(pool, LogMelFrontend(), tokenizer)
    model = target.model
    layers = describe_layers(model, target.layers)
    banks, bank_seconds = {}, {}
    for method in BANK_METHODS:
        start = time.perf_counter()
        moments = None if method == "plain" else input_moments(model, layers, target.calibrate)
        banks[method] = SVDBank.compute(model, layers, method=method, moments=moments)
        bank_seconds[method] = time.perf_counter() - start

    configs = []
    for size in sizes:
        ranks, ratio = uniform_ranks_at_size(banks["plain"].matrices, size)
        configs.append({"label": f"uniform at {size}", "ranks": ranks, "size_ratio": ratio})
    for run in args.ranks:
        best = json.loads((run / "result.json").read_text())["best"]
        keys = [m.key for m in banks["plain"].matrices]
        ranks = dict(zip(keys, best["ranks"], strict=True))
        configs.append({"label": f"{run.name} best", "ranks": ranks, "size_ratio": size_ratio(banks["plain"].matrices, ranks)})

    for path in args.headline:
        keys = [m.key for m in banks["plain"].matrices]
        for row in json.loads(path.read_text())["rows"]:
            if row["method"] == "search":
                ranks = dict(zip(keys, row["ranks"], strict=True))
                configs.append({"label": f"{row['name']} ({row['agent']}, {path.name})", "ranks": ranks,
                                "size_ratio": size_ratio(banks["plain"].matrices, ranks)})

    dense = kit.test_error.evaluate(model)
    dense_pool = evaluate_batches(model, tokenizer, pool_batches).wer
    rows = []
    for config in configs:
        row = {"label": config["label"], "size_ratio": config["size_ratio"], "methods": {}}
        evaluations = {}
        start = time.perf_counter()
        refit = fit_sequential(model, layers, config["ranks"], target.calibrate, banks["whitened"])
        row["sequential_fit_seconds"] = time.perf_counter() - start
        for method in FACTORISATIONS:
            bank = refit if method == "sequential" else banks[method]
            exported = export_factorised(model, layers, config["ranks"], bank)
            evaluations[method] = kit.test_error.evaluate(exported)
            row["methods"][method] = {
                "test_wer": evaluations[method].wer,
                "test_cer": evaluations[method].cer,
                "relative_to_dense": evaluations[method].wer / dense.wer,
                "search_wer": target.checked_error(exported),
                "dev_pool_wer": evaluate_batches(exported, tokenizer, pool_batches).wer,
            }
        plain_errors, words = evaluations["plain"].utterance_errors()
        for method in FACTORISATIONS:
            if method != "plain":
                errors, _ = evaluations[method].utterance_errors()
                row["methods"][method]["vs_plain"] = paired_wer_difference(errors, plain_errors, words).to_dict()
        rows.append(row)
        print(config["label"], {m: round(v["test_wer"], 4) for m, v in row["methods"].items()}, file=sys.stderr)

    result = {
        **run_metadata(),
        "test": kit.test_description,
        "dense_test_wer": dense.wer,
        "dev_pool": [args.pool_start, args.pool_start + len(pool)],
        "dense_dev_pool_wer": dense_pool,
        "calibration": {
            "utterances": len(target.calibrate.utterances),
            "first_id": target.calibrate.utterances[0].id,
            "fingerprint": target.calibration_fingerprint,
        },
        "bank_seconds": bank_seconds,
        "configurations": rows,
    }
    path = write_result("methods.json", result, args.output_dir)
    print(path)
    print(f"dense {dense.wer:.4f} (dev pool {dense_pool:.4f}); bank seconds " + ", ".join(f"{k} {v:.1f}" for k, v in bank_seconds.items())
          + "; sequential fits " + ", ".join(f"{r['sequential_fit_seconds']:.0f}" for r in rows))
    for row in rows:
        print(f"{row['label']} (size {row['size_ratio']:.3f}): " + ", ".join(
            f"{m} dev pool {v['dev_pool_wer']:.4f} test {v['test_wer']:.4f}" + (
                f" ({v['vs_plain']['difference']:+.4f} [{v['vs_plain']['low']:+.4f}, {v['vs_plain']['high']:+.4f}])"
                if "vs_plain" in v else "")
            for m, v in row["methods"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
