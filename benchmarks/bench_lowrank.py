"""Dense fused ``nn.LSTM`` vs the exported factorised LSTM, on CPU.

One bidirectional LSTM layer (input size = hidden size, 300 frames), at hidden
sizes 256/512/1024, batch 1 and 16, rank fractions 0.25 and 0.5 (every matrix
at that fraction of its full rank). Runs are interleaved (dense, 0.25, 0.5,
dense, ...) in inference mode and the median is reported. ``dense_ms`` is the
stock module on a padded tensor (oneDNN on CPU); ``dense_packed_ms`` is the same
module on a ``PackedSequence`` of full-length sequences, the path an encoder that
packs its batches actually runs (PyTorch does not use oneDNN for packed input);
``loop_dense_ms`` is the factorised module's own loop with nothing factorised,
which separates loop overhead from the algebra's savings.

Writes ``benchmarks/results/lowrank.json`` (atomically): a list of rows
``{"hidden", "batch", "threads", "dense_ms", "factorised_ms": {"0.25", "0.5"}, ...}``;
each row also carries ``speedup`` per fraction and the run's metadata.

Usage: ``python -m benchmarks.bench_lowrank [--repeats 7] [--quick]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from benchmarks.common import run_metadata
from shrinkml_env.atomic import atomic_write_text
from shrinkml_env.compression import (
    FactorisedLSTM,
    SVDBank,
    describe_layers,
    export_factorised,
    ranks_from_layer_fractions,
)
from shrinkml_env.compression.timing import interleaved_medians_ms

RESULTS = Path(__file__).resolve().parent / "results" / "lowrank.json"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    hidden_sizes: tuple[int, ...] = (256, 512, 1024)  # per direction; input size = hidden size
    batches: tuple[int, ...] = (1, 16)
    fractions: tuple[float, ...] = (0.25, 0.5)  # rank / min(m, n) for every matrix
    frames: int = 300  # ~3 s of 10 ms frames after no stacking
    repeats: int = 7  # timed interleaved rounds; medians reported
    warmup: int = 2  # untimed rounds (TorchScript profiles its first calls)
    threads: tuple[int, ...] = (os.cpu_count() or 1,)  # one set of rows per thread count
    packed: bool = True  # also time the dense module on a PackedSequence
    loop_dense: bool = True  # also time our loop with dense matrices (loop overhead vs oneDNN)
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.hidden_sizes and self.batches and self.fractions):
            raise ValueError("hidden_sizes, batches and fractions must be non-empty")
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must lie in (0, 1], got {self.fractions}")
        for name in ("frames", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"threads must be non-empty and >= 1, got {self.threads}")


def _metadata(config: BenchConfig) -> dict:
    return run_metadata(frames=config.frames, repeats=config.repeats, seed=config.seed)


def measure(config: BenchConfig, hidden: int, batch: int) -> dict:
    """One row: dense vs factorised medians for one hidden size and batch."""
    torch.manual_seed(config.seed)
    model = nn.Sequential(nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)).eval()
    layers = describe_layers(model, ["0"])
    bank = SVDBank.compute(model, layers)
    exported = {
        f"{f:g}": export_factorised(model, layers, ranks_from_layer_fractions(layers, [f]), bank)[0]
        for f in config.fractions
    }
    x = torch.randn(batch, config.frames, hidden)
    candidates = {"dense": lambda: model[0](x)}
    if config.packed:
        packed = pack_padded_sequence(x, torch.full((batch,), config.frames), batch_first=True)
        candidates["dense_packed"] = lambda: model[0](packed)
    for name, module in exported.items():
        candidates[name] = (lambda m: lambda: m(x))(module)
    if config.loop_dense:
        loop = FactorisedLSTM.from_dense(model[0], {}).eval()  # same loop, nothing factorised
        candidates["loop_dense"] = lambda: loop(x)
    load_before = os.getloadavg()[0]
    medians = interleaved_medians_ms(candidates, repeats=config.repeats, warmup=config.warmup)
    row = {
        "hidden": hidden, "batch": batch, "threads": torch.get_num_threads(),
        "dense_ms": round(medians["dense"], 3),
        "factorised_ms": {name: round(medians[name], 3) for name in exported},
        "speedup": {name: round(medians["dense"] / medians[name], 3) for name in exported},
    }
    if config.packed:
        row["dense_packed_ms"] = round(medians["dense_packed"], 3)
    if config.loop_dense:
        row["loop_dense_ms"] = round(medians["loop_dense"], 3)
    row["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return row


def _write_atomically(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, json.dumps(rows, indent=2) + "\n")


def run(config: BenchConfig, output: Path = RESULTS) -> list[dict]:
    meta = _metadata(config)
    rows = []
    for hidden, batch, threads in itertools.product(config.hidden_sizes, config.batches,
                                                    config.threads):
        torch.set_num_threads(threads)
        row = {**meta, **measure(config, hidden, batch)}  # the row's own "threads" wins
        rows.append(row)
        ratios = "  ".join(f"{k}: {v:7.1f} ms ({row['speedup'][k]:.2f}x)"
                           for k, v in row["factorised_ms"].items())
        packed = f"  packed dense {row['dense_packed_ms']:7.1f}" if config.packed else ""
        print(f"H={hidden:5d} B={batch:3d} threads={threads}  dense {row['dense_ms']:7.1f} ms  "
              f"{ratios}{packed}  load {row['load_avg_1m']}", flush=True)
    _write_atomically(output, rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    parser.add_argument("--threads", type=int, nargs="+", default=list(BenchConfig.threads),
                        help="thread counts to measure (default: all cores)")
    parser.add_argument("--no-packed", action="store_true", help="skip the PackedSequence timing")
    parser.add_argument("--quick", action="store_true", help="hidden 256/512, batch 1, 3 repeats")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    threads = tuple(args.threads)
    config = BenchConfig(repeats=args.repeats, threads=threads, packed=not args.no_packed)
    if args.quick:
        config = BenchConfig(hidden_sizes=(256, 512), batches=(1,), repeats=3,
                             threads=threads, packed=not args.no_packed)
    print(json.dumps(asdict(config)), file=sys.stderr)
    run(config, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
