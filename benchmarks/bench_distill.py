"""Fine-tuning a compressed model with and without distillation from the dense model.

The shipped model is compressed uniformly to ``--size`` (every matrix at the largest common
rank fraction that fits), exported truly factorised (``--factorisation``), and fine-tuned
for ``--updates`` updates once per ``--distill-weights`` value (0: reference loss only; w:
``(1 - w) · reference + w · KL(dense ‖ compressed)``), same data order, learning rate and
batches. Best-on-dev selection (first ``--dev-utterances`` dev utterances); test WER on the
first ``--test`` test utterances, before and after.

Writes ``benchmarks/results/distill.json``; run directories under ``--out`` resume. Run:
``python -m benchmarks.bench_distill --threads 2``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from asr.checkpoint import load_checkpoint
from asr.default import default_checkpoint, load_split
from asr.finetune import FinetuneConfig, finetune
from asr.target import asr_target
from benchmarks.common import RESULTS, run_metadata, write_result
from benchmarks.search_study import parse_floats
from shrinkml_env.compression import SVDBank, describe_layers, export_factorised
from shrinkml_env.compression.calibration import input_moments
from shrinkml_env.compression.ranks import uniform_ranks_at_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=float, default=0.3)
    parser.add_argument("--factorisation", default="plain", choices=("plain", "whitened"))
    parser.add_argument("--distill-weights", default="0,0.5")
    parser.add_argument("--updates", type=int, default=150)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-seconds", type=float, default=160.0)
    parser.add_argument("--dev-utterances", type=int, default=200)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/distill"))
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dense, tokenizer, _ = load_checkpoint(default_checkpoint())
    layers = describe_layers(dense, dense.compressible_layers())
    moments = None
    if args.factorisation == "whitened":
        moments = input_moments(dense, layers, asr_target(default_checkpoint()).calibrate)
    bank = SVDBank.compute(dense, layers, method=args.factorisation, moments=moments)
    ranks, ratio = uniform_ranks_at_size(bank.matrices, args.size)
    compressed = export_factorised(dense, layers, ranks, bank)
    train_set, dev_set, test_set = load_split("train"), load_split("dev"), load_split("test")[: args.test]
    arms = []
    for weight in parse_floats(args.distill_weights):
        config = FinetuneConfig(updates=args.updates, learning_rate=args.lr, max_batch_seconds=args.batch_seconds,
                                dev_utterances=args.dev_utterances, threads=args.threads, distill_weight=weight)
        started = time.perf_counter()
        result = finetune(compressed, tokenizer, config, train_set, dev_set, test_set,
                          args.out / f"{args.factorisation}-size{args.size}-w{weight}",
                          source=f"uniform {args.size} ({args.factorisation})",
                          teacher=dense if weight > 0 else None)
        arms.append({"distill_weight": weight, **result.to_dict(), "wall_seconds": time.perf_counter() - started})
        print(f"distill {weight}: test {result.test_wer_before:.4f} -> {result.test_wer:.4f}, dev best "
              f"{result.best_dev_wer:.4f}", file=sys.stderr)
    payload = {**run_metadata(), "size_ratio": ratio, "factorisation": args.factorisation, "updates": args.updates,
               "learning_rate": args.lr, "batch_seconds": args.batch_seconds, "test_utterances": args.test,
               "arms": arms}
    print(write_result("distill.json", payload, args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
