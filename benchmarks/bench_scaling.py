"""Scaling: time and memory of one search evaluation vs search-subset size and vs model size.

* **Subset size**: one evaluation (batched greedy decoding + WER) of the shipped model on the
  first N dev utterances (the search subset is drawn from dev), for each ``--subset-sizes``.
  Toy target: the toy task's misclassification error on N samples.
* **Model size**: the ``--presets`` (untrained, so decoding runs a fixed number of decoder
  steps: 15 tokens per second of audio) on the same synthetic workload of
  ``--model-utterances`` utterances of 4 s, batched as the search batches them (64).

Every point runs in a fresh spawned process (``--isolate``, the default) so that memory is a
clean ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` delta: peak resident memory after the
first evaluation minus before it, i.e. what the evaluation adds on top of the loaded model
and prepared features (both also reported). ``--no-isolate`` measures in this process, where
the peak is shared with earlier points, so deltas are lower bounds (tests use it). Time is the
median of ``--repeats`` evaluations after the first. With ``--device cuda`` points also report
``torch.cuda.max_memory_allocated`` and are labelled with the device name.

Writes ``scaling.json`` and ``scaling.md`` to ``benchmarks/results`` (or ``--output-dir``;
``--result-name`` to keep an accelerator run apart, e.g. ``scaling_gpu.json``).

Run::

    python -m benchmarks.bench_scaling                    # CPU: tiny/default presets
    python -m benchmarks.bench_scaling --quick            # make bench
    python -m benchmarks.bench_scaling --device cuda --presets tiny,default,large \\
        --subset-sizes 25,50,100,200,400 --result-name scaling_gpu.json   # accelerator machine
    python -m benchmarks.bench_scaling --target toy --no-isolate --output-dir /tmp/b
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import apply_quick_defaults, run_metadata
from benchmarks.search_study import parse_ints, parse_names
from benchmarks.study_output import publish, set_threads

QUICK = {"subset_sizes": "25,50,100", "model_utterances": 16, "repeats": 2}
MODEL_SECONDS = 4.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _setup_subset(target: str, size: int, device: str):
    if target == "toy":
        from shrinkml_env.target import ToyModel, toy_error

        torch.manual_seed(0)
        model = ToyModel().eval().to(device)
        evaluate = toy_error(model, 0, samples=size)
        return model, evaluate
    from asr.default import default_checkpoint, load_split
    from asr.target import asr_target

    path = default_checkpoint() if target == "default" else Path(target)
    built = asr_target(path, load_split("dev")[:size], device=device)
    return built.model, built.evaluate


def _setup_model(preset: str, utterances: int, device: str):
    from asr.model import build_model
    from benchmarks.bench_inference import _runner, synthetic_workload

    torch.manual_seed(0)
    model = build_model(preset).eval().to(device)
    work = synthetic_workload([MODEL_SECONDS] * utterances, 64, model.config.n_mels)
    work.batches = [(f.to(device), n.to(device)) for f, n in work.batches]
    run = _runner(model, work)
    return model, lambda _model: run()


def measure_point(kind: str, name: str, size: int, target: str, device: str, repeats: int, threads: int) -> dict[str, Any]:
    """Set up one point, then time and measure its evaluation (runs in a child process)."""
    torch.set_num_threads(threads)
    rss_start = _rss_mb()
    started = time.perf_counter()
    if kind == "subset":
        model, evaluate = _setup_subset(target, size, device)
    else:
        model, evaluate = _setup_model(name, size, device)
    setup_seconds = time.perf_counter() - started
    rss_before = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        evaluate(model)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    row = {
        "kind": kind, "name": name, "size": size, "device": device,
        "parameters": sum(p.numel() for p in model.parameters()),
        "setup_seconds": setup_seconds,
        "first_evaluation_seconds": times[0],
        "evaluation_seconds": statistics.median(times[1:]) if repeats else times[0],
        "rss_setup_mb": rss_before - rss_start,
        "rss_evaluation_delta_mb": _rss_mb() - rss_before,
        "rss_peak_mb": _rss_mb(),
    }
    if device.startswith("cuda"):
        row["cuda_device"] = torch.cuda.get_device_name(device)
        row["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def run_points(points: list[tuple], isolate: bool) -> list[dict[str, Any]]:
    if not isolate:
        return [measure_point(*p) for p in points]
    rows = []
    for point in points:  # one fresh process per point: a clean peak-RSS baseline
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows.append(pool.submit(measure_point, *point).result())
        print(f"{point[0]} {point[1]} {point[2]}: {rows[-1]['evaluation_seconds']:.3f} s, "
              f"+{rows[-1]['rss_evaluation_delta_mb']:.0f} MB", flush=True)
    return rows


def summary_markdown(payload: dict[str, Any]) -> str:
    lines = ["# Scaling (`scaling.json`)", ""]
    if payload.get("note"):
        lines += [f"Measured on: {payload['note']}.", ""]
    lines += [f"Device: {payload['device_label']}; memory: {payload['memory_method']}.", "",
              "| series | point | parameters | evaluation s | first evaluation s | setup s | RSS added by evaluation MB |"
              " GPU peak MB |", "|---|---|---|---|---|---|---|---|"]
    for row in payload["points"]:
        point = f"{row['size']} utterances" if row["kind"] == "subset" else f"{row['name']} × {row['size']} utts"
        gpu = row.get("cuda_max_allocated_mb")
        lines.append(f"| {row['kind']} | {point} | {row['parameters'] / 1e6:.2f}M | {row['evaluation_seconds']:.3f} | "
                     f"{row['first_evaluation_seconds']:.3f} | {row['setup_seconds']:.2f} | "
                     f"{row['rss_evaluation_delta_mb']:.0f} | {'–' if gpu is None else f'{gpu:.0f}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="default", help="'default', an ASR checkpoint, or 'toy'")
    parser.add_argument("--subset-sizes", default="25,50,100,200,400", help="'0': skip the subset series")
    parser.add_argument("--presets", default="tiny,default", help="'' skips the model series")
    parser.add_argument("--model-utterances", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=True,
                        help="one spawned process per point (clean ru_maxrss deltas)")
    parser.add_argument("--output-dir", type=Path)
    parser.add_argument("--result-name", default="scaling.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick_defaults(parser, args, QUICK)
    set_threads(args.threads)
    sizes = [s for s in parse_ints(args.subset_sizes) if s > 0]
    presets = parse_names(args.presets)
    if args.target == "toy":
        sizes = sizes or [64]
        sizes = [max(s, 8) for s in sizes]
    points = [("subset", args.target, s, args.target, args.device, args.repeats, args.threads) for s in sizes]
    points += [("model", p, args.model_utterances, args.target, args.device, args.repeats, args.threads) for p in presets]
    rows = run_points(points, args.isolate)
    device_label = args.device
    if args.device.startswith("cuda"):
        device_label = f"{args.device} ({rows[0].get('cuda_device', 'unknown GPU')})" if rows else args.device
    payload = {
        "meta": run_metadata(quick=args.quick),
        "note": "**toy target** for the subset series" if args.target == "toy" else "",
        "device_label": device_label,
        "memory_method": ("resource.getrusage ru_maxrss delta in a fresh spawned process per point"
                          if args.isolate else "resource.getrusage ru_maxrss delta in one process (lower bounds)"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "points": rows,
    }
    publish(Path(args.result_name).stem, payload, summary_markdown(payload), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
