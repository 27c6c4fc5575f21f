"""How much dense checkpoints lose to uniform compression, on dev: for choosing how to train.

For each ``--checkpoint`` (default: the shipped one): the spectrum of its LSTM matrices (summed
nuclear norm; the share of each matrix's squared singular values kept at rank fractions 1/4
and 0.3, averaged over the matrices), its greedy WER on the **dev pool** (dev utterances from
``--pool-start``, disjoint from the search subset and the calibration set), and the dev-pool WER
after uniform compression at each ``--sizes`` (one rank fraction for every matrix, the largest
whose size ratio is at most the size) by each of the ``plain`` and ``whitened`` factorisations.
No test data: this is what a training choice (e.g. ``train-asr --nuclear-weight``) is judged
by; the chosen model's test figures come from ``bench_model`` and ``bench_headline``.

Writes ``benchmarks/results/compressibility_dev.json``. Run: ``python -m
benchmarks.bench_compressibility --checkpoint A --checkpoint B`` (``--quick``: 100 dev-pool
utterances, size 0.3, into ``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from asr.calibration import TeacherForcedCalibration, check_calibration, default_calibration
from asr.checkpoint import load_checkpoint
from asr.data import prepare_feature_batches
from asr.default import default_checkpoint, load_split
from asr.evaluate import evaluate_batches
from asr.features import LogMelFrontend
from asr.nuclear import lstm_matrices
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

METHODS = ("plain", "whitened")
FRACTIONS = (0.25, 0.3)

QUICK = {"sizes": "0.3", "pool": 100, "output_dir": RESULTS / "quick"}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--checkpoint", type=Path, action="append", default=[],
                    help="a dense checkpoint; repeat it to compare (default: the shipped one)")
parser.add_argument("--sizes", default="0.5,0.3", help="comma-separated size ratios (default: %(default)s)")
parser.add_argument("--pool-start", type=int, default=600, help="first dev index of the dev pool")
parser.add_argument("--pool", type=int, default=600, help="dev-pool utterances (ends before the calibration set)")
parser.add_argument("--threads", type=int, help="torch threads")
parser.add_argument("--quick", action="store_true", help="a small smoke run")
parser.add_argument("--output-dir", type=Path, default=RESULTS)


def spectrum(model: torch.nn.Module, fractions: tuple[float, ...] = FRACTIONS) -> dict[str, float]:
    """Summed nuclear norm of the LSTM matrices, and the mean share of their squared singular
    values kept at each rank fraction (rank ``floor(fraction · min(shape))``, at least 1)."""
    nuclear, kept = 0.0, {f: [] for f in fractions}
    with torch.no_grad():
        for _, matrix in lstm_matrices(model):
            s = torch.linalg.svdvals(matrix.float())
            nuclear += float(s.sum())
            energy = (s**2).cumsum(0) / (s**2).sum().clamp_min(1e-30)
            for f in fractions:
                kept[f].append(float(energy[max(1, int(f * len(s))) - 1]))
    return {"nuclear_norm": nuclear, **{f"energy_kept_at_{f:g}": sum(v) / len(v) for f, v in kept.items()}}


def measure(checkpoint: Path, sizes: list[float], pool_start: int, pool_size: int) -> dict:
    """One checkpoint's row: spectrum, dense and uniformly compressed dev-pool WER."""
    model, tokenizer, _ = load_checkpoint(checkpoint)
    pool = load_split("dev")[pool_start : pool_start + pool_size]
    calibration = default_calibration()  # the search's own calibration set, as asr.target uses it
    check_calibration(calibration, evaluation=load_split("search"), dev_pool=pool)
    calibrate = TeacherForcedCalibration(calibration, tokenizer)
    batches = prepare_feature_batches(pool, LogMelFrontend(), tokenizer)
    layers = describe_layers(model, model.compressible_layers())
    start = time.perf_counter()
    banks = {method: SVDBank.compute(model, layers, method=method, moments=None if method == "plain"
                                     else input_moments(model, layers, calibrate)) for method in METHODS}
    bank_seconds = time.perf_counter() - start
    dense = evaluate_batches(model, tokenizer, batches).wer
    compressed = []
    for size in sizes:
        ranks, ratio = uniform_ranks_at_size(banks["plain"].matrices, size)
        row = {"size": size, "size_ratio": ratio}
        for method in METHODS:
            wer = evaluate_batches(export_factorised(model, layers, ranks, banks[method]), tokenizer, batches).wer
            row[method] = {"dev_pool_wer": wer, "relative_to_dense": wer / dense}
        compressed.append(row)
    return {"checkpoint": str(checkpoint), **spectrum(model), "dense_dev_pool_wer": dense,
            "bank_seconds": bank_seconds, "uniform": compressed}


def main(argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick_defaults(parser, args, QUICK)
    sizes = parse_size_ratios(parser, args.sizes)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    checkpoints = args.checkpoint or [default_checkpoint()]
    rows = []
    for checkpoint in checkpoints:
        rows.append(measure(checkpoint, sizes, args.pool_start, args.pool))
        print(_summary(rows[-1]), file=sys.stderr)
    result = {**run_metadata(threads=torch.get_num_threads()), "dev_pool": [args.pool_start, args.pool_start + args.pool],
              "checkpoints": rows}
    print(write_result("compressibility_dev.json", result, args.output_dir))
    return 0


def _summary(row: dict) -> str:
    parts = [f"{row['checkpoint']}: nuclear {row['nuclear_norm']:.0f}, energy kept at 1/4 "
             f"{row['energy_kept_at_0.25']:.3f}; dense {row['dense_dev_pool_wer']:.4f}"]
    for c in row["uniform"]:
        parts.append(f"size {c['size']:g}: " + ", ".join(
            f"{m} {c[m]['dev_pool_wer']:.4f} ({c[m]['relative_to_dense']:.2f}x)" for m in METHODS))
    return "; ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
