"""What bfloat16 autocast buys a CPU training step of the default recogniser, and what it changes.

``train-asr --precision bf16`` runs the forward pass and the loss under bfloat16 autocast;
weights, gradients and the optimiser stay fp32. On real training batches of the default
corpus (``--batches`` of ``--batch-seconds`` of audio, the shipped weights), this measures:

* the time of one forward and backward pass on the CPU in fp32 and in bf16, interleaved,
  median of ``--repeats`` (the ratio is the speed-up; nothing else may run on the machine;
  a whole update also reads audio, computes features, sums gradients and steps Adam, which
  bf16 does not speed up; a GPU's bf16 is another matter, not measured here);
* what bf16 changes: the loss's relative difference and the cosine similarity between the
  fp32 and bf16 gradients of all parameters (1.0: the same update direction), per batch.

Writes ``benchmarks/results/train_precision.json``. Run:
``python -m benchmarks.bench_train_precision [--threads 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, run_metadata, write_result


def _feature_batches(count: int, batch_seconds: float, tokenizer) -> list:
    from asr.data import duration_batches, load_batch
    from asr.default import load_split
    from asr.features import LogMelFrontend, normalise_utterances

    train = load_split("train")
    frontend = LogMelFrontend()
    indices = duration_batches([u.duration for u in train], batch_seconds, 48, shuffle=True, seed=0)[:count]
    out = []
    for batch_indices in indices:
        batch = load_batch([train[i] for i in batch_indices], tokenizer)
        with torch.no_grad():
            features, frames = frontend(batch.waveforms, batch.samples)
            features = normalise_utterances(features, frames)
        out.append((features, frames, batch.targets, batch.target_lengths))
    return out


def _step(model, batch, bf16: bool) -> tuple[float, torch.Tensor, float]:
    """Loss, flattened gradient and seconds of one forward and backward pass."""
    from asr.train import joint_loss

    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        loss, _ = joint_loss(model, *batch, label_smoothing=0.1)
    loss.backward()
    seconds = time.perf_counter() - start
    gradient = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    return loss.item(), gradient, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="weights to start from (default: the shipped model)")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-seconds", type=float, default=80.0,
                        help="audio per batch (80: one process's half of the shipped recipe's 160-s batches)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if min(args.batches, args.repeats) < 1 or args.batch_seconds <= 0:
        parser.error(f"--batches and --repeats must be >= 1 and --batch-seconds > 0; got {args.batches}, "
                     f"{args.repeats}, {args.batch_seconds}")
    torch.set_num_threads(args.threads)
    from asr.checkpoint import load_checkpoint
    from asr.default import default_checkpoint

    checkpoint = args.checkpoint or default_checkpoint()
    model, tokenizer, _ = load_checkpoint(checkpoint)
    model.float().train()
    torch.manual_seed(0)
    batches = _feature_batches(args.batches, args.batch_seconds, tokenizer)
    rows, times = [], {"fp32": [], "bf16": []}
    for k, batch in enumerate(batches):
        _step(model, batch, False)  # warm-up: first-call allocations are not the step's cost
        # Dropout draws the same masks in both precisions: the gradients differ by rounding only.
        state = torch.get_rng_state()
        loss32, grad32, _ = _step(model, batch, False)
        torch.set_rng_state(state)
        loss16, grad16, _ = _step(model, batch, True)
        for _ in range(args.repeats):
            for name, bf16 in (("fp32", False), ("bf16", True)):
                times[name].append(_step(model, batch, bf16)[2])
        rows.append({
            "batch": k, "utterances": int(batch[0].shape[0]), "frames": int(batch[0].shape[1]),
            "loss_fp32": round(loss32, 4), "loss_relative_difference": round(abs(loss16 - loss32) / loss32, 5),
            "gradient_cosine": round(torch.nn.functional.cosine_similarity(grad32.double(), grad16.double(), dim=0).item(), 5),
            "gradient_norm_ratio": round((grad16.double().norm() / grad32.double().norm()).item(), 4),
        })
    medians = {name: round(statistics.median(t), 3) for name, t in times.items()}
    payload = {
        "meta": run_metadata(benchmark="train_precision", checkpoint=str(checkpoint), batches=args.batches,
                             batch_seconds=args.batch_seconds, repeats=args.repeats),
        "step_seconds_median": medians,
        "speedup_bf16": round(medians["fp32"] / medians["bf16"], 3),
        "batches": rows,
    }
    print(write_result("train_precision.json", payload, args.output_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
