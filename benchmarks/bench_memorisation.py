"""How much a recogniser has learnt its training sentences: WER on heard against new sentences.

For each ``--checkpoint`` (default: the shipped one), greedy WER and CER of the attention
decoder and of the CTC head (best path, no language model in it) on the first ``--limit``
utterances of each of ``--splits``. The default splits make the comparison: ``train`` and
``train_extra`` are two draws of one distribution (same voices, shaping and augmentation), so
for a checkpoint that trained on ``train`` alone the gap between them is what it has learnt
of the sentences themselves rather than of speech; ``dev`` is the clean reference. A
checkpoint that trained on both has heard both; read its row against the earlier one's.

Writes ``benchmarks/results/memorisation.json``. Run: ``python -m benchmarks.bench_memorisation
--checkpoint A --checkpoint B`` (``--quick``: 30 utterances per split, into
``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from asr.checkpoint import load_checkpoint
from asr.data import prepare_feature_batches
from asr.decoding import CTCBestPath
from asr.default import default_checkpoint, load_split
from asr.evaluate import evaluate_batches
from asr.features import LogMelFrontend
from benchmarks.common import RESULTS, apply_quick_defaults, run_metadata, write_result

DECODERS = {"attention": None, "ctc": CTCBestPath()}  # greedy attention; CTC best path
QUICK = {"limit": 30, "output_dir": RESULTS / "quick"}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--checkpoint", type=Path, action="append", default=[],
                    help="a checkpoint; repeat it to compare (default: the shipped one)")
parser.add_argument("--splits", default="train,train_extra,dev", help="comma-separated splits (default: %(default)s)")
parser.add_argument("--limit", type=int, default=300, help="first N utterances of each split (default: %(default)s)")
parser.add_argument("--threads", type=int, help="torch threads")
parser.add_argument("--quick", action="store_true", help="a small smoke run")
parser.add_argument("--output-dir", type=Path, default=RESULTS)


def measure(checkpoint: Path, splits: list[str], limit: int) -> dict:
    """One checkpoint's row: per split, per decoder, WER and CER."""
    model, tokenizer, _ = load_checkpoint(checkpoint)
    row: dict = {"checkpoint": str(checkpoint), "splits": {}}
    for split in splits:
        batches = prepare_feature_batches(load_split(split)[:limit], LogMelFrontend(), tokenizer)
        row["splits"][split] = {}
        for name, decoder in DECODERS.items():
            rates = evaluate_batches(model, tokenizer, batches, decoder).rates
            row["splits"][split][name] = {"wer": rates.wer, "cer": rates.cer}
    return row


def main(argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick_defaults(parser, args, QUICK)
    if args.limit < 1:
        parser.error(f"--limit must be >= 1; got {args.limit}")
    splits = [s for s in args.splits.split(",") if s]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = []
    for checkpoint in args.checkpoint or [default_checkpoint()]:
        rows.append(measure(checkpoint, splits, args.limit))
        print(rows[-1]["checkpoint"] + ": " + "; ".join(
            f"{split} " + ", ".join(f"{name} {r['wer']:.4f}" for name, r in decoders.items())
            for split, decoders in rows[-1]["splits"].items()), file=sys.stderr)
    result = {**run_metadata(threads=torch.get_num_threads()), "limit": args.limit, "checkpoints": rows}
    print(write_result("memorisation.json", result, args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
