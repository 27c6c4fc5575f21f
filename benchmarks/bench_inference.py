"""Compressed-model inference: original vs exported (truly factorised) recognisers on CPU.

For each budget, two configurations are exported with ``export_factorised``: ``uniform``
(every layer at the largest menu fraction that fits, the search's own baseline) and
``searched`` (the best-known configuration of ``search.json``, when that file exists and
matches the model). For the original and every export it reports parameters, checkpoint
bytes, CPU latency per utterance at batch 1 and batch 16 (variants timed interleaved, the
median over ``--repeats`` rounds), the real-time factor (processing seconds ÷ audio
seconds), and the measured speed-up against the theoretical one: the reduction of
multiply-adds in the LSTM matrices, weighted by how often each runs (encoder matrices
once per encoder frame, decoder matrices once per output token). Only the LSTM matrices
shrink; attention, embeddings and output layers do not, so the theoretical figure is an
upper bound.

The same rank fractions are then applied to the ``large`` preset (hidden 1024, untrained),
on synthetic features, because on CPU factorisation pays off in speed only for larger
layers (see ``lowrank.json``).

Speed-ups compare equal work: every model runs the same number of decoder steps per batch
(the longest reference transcript's length in the batch, or 15 tokens per second of audio
for synthetic input), since a compressed model's greedy decoding may stop earlier or later
than the original's and would otherwise be timed on a different amount of output. For the
shipped model real greedy decoding is timed as well (``greedy_*``, with the tokens each
variant emitted): the latency a user sees.

Writes ``inference.json`` and ``inference.md`` to ``benchmarks/results`` (or
``--output-dir``).

Run::

    python -m benchmarks.bench_inference                  # full
    python -m benchmarks.bench_inference --quick          # make bench
    python -m benchmarks.bench_inference --target toy --output-dir /tmp/b   # tiny untrained model
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from asr.checkpoint import load_checkpoint, save_checkpoint, save_factorised_asr
from asr.decoding import greedy_decode
from asr.model import ASRModel, build_model
from asr.text import CharTokenizer
from benchmarks.common import apply_quick_defaults, run_metadata
from benchmarks.search_study import parse_floats, parse_ints, weights_fingerprint
from benchmarks.study_output import output_path, publish, set_threads
from shrinkml_env.compression import (
    MatrixSpec,
    all_matrices,
    compressible_parameter_count,
    describe_layers,
    export_factorised,
    matrix_parameter_count,
    rank_for_fraction,
    size_ratio,
)
from shrinkml_env.compression.timing import interleaved_medians_ms
from shrinkml_env.search_space import DEFAULT_MENU

FEATURE_FRAMES_PER_SECOND = 100  # 10 ms hop
SYNTHETIC_TOKENS_PER_SECOND = 15  # about the default corpus' speaking rate in characters
QUICK = {"utterances": 16, "repeats": 3, "large_utterances": 2}


@dataclass
class Workload:
    """Input batches for one batch size, with the decoder steps each batch runs.

    ``greedy``: the batches are real speech, so real greedy decoding is timed as well.
    """

    batches: list[tuple[torch.Tensor, torch.Tensor]]
    steps: list[int]
    audio_seconds: float
    utterances: int
    greedy: bool


# -- configurations ---------------------------------------------------------------------------
def uniform_ranks(model: ASRModel, budget: float) -> dict[str, int]:
    """Every matrix at the largest default-menu fraction whose size ratio fits ``budget``."""
    matrices = _matrices(model)
    chosen = {m.key: rank_for_fraction(m, DEFAULT_MENU.fractions[0]) for m in matrices}
    for fraction in DEFAULT_MENU.fractions:
        ranks = {m.key: rank_for_fraction(m, fraction) for m in matrices}
        if size_ratio(matrices, ranks) <= budget + 1e-9:
            chosen = ranks
    return chosen


def transfer_fractions(source: Sequence[MatrixSpec], ranks: dict[str, int], target: Sequence[MatrixSpec]) -> dict[str, int]:
    """Ranks for ``target`` at the rank fractions ``ranks`` gives ``source``.

    Matrices are matched by module family (``encoder``/``decoder``), layer position, kind and
    direction; a target layer deeper than the source's deepest takes the deepest's fraction.
    """
    def parts(m: MatrixSpec) -> tuple[str, int]:
        match = re.fullmatch(r"(\w+)\.(\d+)", m.module_path)
        return (match.group(1), int(match.group(2))) if match else (m.module_path, 0)

    fractions, depth = {}, {}
    for m in source:
        family, index = parts(m)
        fractions[(family, index, m.kind, m.direction)] = ranks[m.key] / m.full_rank
        depth[family] = max(depth.get(family, 0), index)
    out = {}
    for m in target:
        family, index = parts(m)
        key = (family, min(index, depth.get(family, 0)), m.kind, m.direction)
        if key not in fractions:
            raise ValueError(f"no source matrix matches {m.key!r}; the two models' layers differ in kind")
        out[m.key] = rank_for_fraction(m, min(1.0, fractions[key]))
    return out


def searched_ranks(search_json: Path, model: ASRModel) -> dict[str, dict[str, int]]:
    """Best-known configuration per budget from ``search.json`` (empty if absent/mismatched)."""
    if not search_json.is_file():
        return {}
    data = json.loads(search_json.read_text(encoding="utf-8"))
    searched_on = (data.get("target_identity") or {}).get("fingerprint")
    if searched_on is not None and searched_on != weights_fingerprint(model):
        return {}  # searched on another model: its ranks say nothing about this one
    matrices = _matrices(model)
    out = {}
    for budget, best in (data.get("best_known") or {}).items():
        if best and len(best["ranks"]) == len(matrices) and all(
                1 <= r <= m.full_rank for m, r in zip(matrices, best["ranks"])):
            out[budget] = {m.key: int(r) for m, r in zip(matrices, best["ranks"])}
    return out


def _matrices(model: ASRModel) -> tuple[MatrixSpec, ...]:
    return all_matrices(describe_layers(model, model.compressible_layers()))


def lstm_macs(model: ASRModel, ranks: dict[str, int] | None, encoder_steps: int, decoder_steps: int) -> float:
    """Multiply-adds of the LSTM matrices for a workload (None: all dense)."""
    total = 0.0
    for m in _matrices(model):
        per_step = matrix_parameter_count(m.rows, m.cols, None if ranks is None else ranks[m.key])
        total += per_step * (encoder_steps if m.module_path.startswith("encoder") else decoder_steps)
    return total


# -- workloads and timing ---------------------------------------------------------------------
def real_workload(utterances, tokenizer: CharTokenizer, batch: int) -> Workload:
    from asr.data import prepare_feature_batches
    from asr.features import LogMelFrontend

    prepared = prepare_feature_batches(utterances, LogMelFrontend(), tokenizer, max_batch_seconds=1e9,
                                       max_batch_size=batch)
    steps = [max(len(tokenizer.encode(text)) + 1 for text in b.texts) for b in prepared]  # + <eos>
    return Workload([(b.features, b.frames) for b in prepared], steps, sum(u.duration for u in utterances),
                    len(utterances), greedy=True)


def synthetic_workload(durations: Sequence[float], batch: int, n_mels: int, seed: int = 0) -> Workload:
    generator = torch.Generator().manual_seed(seed)
    batches, steps = [], []
    for start in range(0, len(durations), batch):
        chunk = durations[start:start + batch]
        frames = torch.tensor([int(d * FEATURE_FRAMES_PER_SECOND) for d in chunk])
        batches.append((torch.randn(len(chunk), int(frames.max()), n_mels, generator=generator), frames))
        steps.append(int(max(chunk) * SYNTHETIC_TOKENS_PER_SECOND))
    return Workload(batches, steps, float(sum(durations)), len(durations), greedy=False)


@torch.inference_mode()
def _decode_fixed(model: ASRModel, features: torch.Tensor, frames: torch.Tensor, steps: int) -> int:
    encoded, lengths = model.encode(features, frames)
    state = model.initial_state(encoded, lengths)
    tokens = torch.full((features.shape[0],), CharTokenizer.sos_id, dtype=torch.long, device=features.device)
    for _ in range(steps):
        logits, state = model.decoder_step(tokens, state)
        tokens = logits.argmax(dim=1)
    return steps * features.shape[0]


def _runner(model: ASRModel, work: Workload, greedy: bool = False) -> Callable[[], int]:
    """Decode every batch (fixed steps, or greedy); returns the tokens decoded."""
    def run() -> int:
        tokens = 0
        for i, (features, frames) in enumerate(work.batches):
            if greedy:
                tokens += sum(len(row) + 1 for row in greedy_decode(model, features, frames))
            else:
                tokens += _decode_fixed(model, features, frames, work.steps[i])
        return tokens
    return run


def checkpoint_bytes(model: ASRModel, ranks: dict[str, int] | None) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        if ranks is None:
            save_checkpoint(path, model, CharTokenizer(), {})
        else:
            save_factorised_asr(path, model, CharTokenizer(), {})
        return path.stat().st_size


def measure_model(name: str, dense: ASRModel, configs: dict[str, dict[str, int]],
                  workloads: dict[int, Workload], repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Everything for one model and its compressed variants (``configs``: label -> ranks)."""
    layers = describe_layers(dense, dense.compressible_layers())
    models: dict[str, tuple[ASRModel, dict[str, int] | None]] = {"original": (dense, None)}
    for label, ranks in configs.items():
        models[label] = (export_factorised(dense, layers, ranks).eval(), ranks)
    rows: dict[str, dict[str, Any]] = {
        label: {"parameters": sum(p.numel() for p in m.parameters()), "checkpoint_bytes": checkpoint_bytes(m, r),
                "ranks": r}
        for label, (m, r) in models.items()
    }
    stacking = dense.config.frame_stacking
    for batch, work in workloads.items():
        tokens = _runner(dense, work)()
        encoder_steps = sum(int(f.sum()) // stacking for _, f in work.batches)
        times = interleaved_medians_ms({label: _runner(m, work) for label, (m, _) in models.items()},
                                       repeats=repeats, warmup=1)
        dense_macs = lstm_macs(dense, None, encoder_steps, tokens)
        for label, (_, ranks) in models.items():
            ms = times[label]
            rows[label][f"batch{batch}"] = {
                "ms_per_utterance": ms / work.utterances,
                "real_time_factor": ms / 1e3 / work.audio_seconds,
                "speedup": times["original"] / ms,
                "theoretical_lstm_speedup": dense_macs / lstm_macs(dense, ranks, encoder_steps, tokens),
                "decoder_steps": tokens,
            }
        line = f"{name} batch {batch}, equal steps: " + ", ".join(f"{k} {v:.1f} ms" for k, v in times.items())
        if work.greedy:
            emitted = {label: _runner(m, work, greedy=True)() for label, (m, _) in models.items()}
            greedy = interleaved_medians_ms({label: _runner(m, work, greedy=True) for label, (m, _) in models.items()},
                                            repeats=repeats, warmup=1)
            for label in models:
                rows[label][f"batch{batch}"].update({
                    "greedy_ms_per_utterance": greedy[label] / work.utterances,
                    "greedy_real_time_factor": greedy[label] / 1e3 / work.audio_seconds,
                    "greedy_tokens": emitted[label],
                })
            line += "; greedy: " + ", ".join(f"{k} {v:.1f} ms ({emitted[k]} tokens)" for k, v in greedy.items())
        log(line)
    for row in rows.values():
        row["parameter_ratio"] = row["parameters"] / rows["original"]["parameters"]
        row["checkpoint_ratio"] = row["checkpoint_bytes"] / rows["original"]["checkpoint_bytes"]
        if row["ranks"] is not None:
            matrices = _matrices(dense)
            row["lstm_size_ratio"] = compressible_parameter_count(matrices, row["ranks"]) / compressible_parameter_count(matrices)
        row["ranks"] = None if row["ranks"] is None else list(row["ranks"].values())
    return {"model": name, "config": dense.config.to_dict(), "audio_seconds": workloads[min(workloads)].audio_seconds,
            "utterances": workloads[min(workloads)].utterances, "variants": rows}


def _configs(model: ASRModel, budgets: Sequence[float], searched: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    configs = {}
    for budget in budgets:
        configs[f"uniform@{budget}"] = uniform_ranks(model, budget)
        if str(budget) in searched:
            configs[f"searched@{budget}"] = searched[str(budget)]
    return configs


def summary_markdown(payload: dict[str, Any]) -> str:
    lines = ["# Compressed-model inference (`inference.json`)", ""]
    if payload.get("note"):
        lines += [f"Measured on: {payload['note']}.", ""]
    for block in payload["models"]:
        lines += [f"## {block['model']} ({block['utterances']} utterances, {block['audio_seconds']:.1f} s of audio)", "",
                  "Speed-ups at equal decoder steps (theory: LSTM multiply-adds); greedy: real decoding, "
                  "the tokens each variant emitted in brackets.", "",
                  "| variant | params | checkpoint | LSTM size | b1 ms/utt | b1 RTF | b1 speed-up (theory) "
                  "| b16 ms/utt | b16 speed-up (theory) | b1 greedy ms/utt (tokens) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for label, row in block["variants"].items():
            b1, b16 = row.get("batch1", {}), row.get("batch16", {})

            def cell(b: dict, key: str, digits: int = 2) -> str:
                return "–" if key not in b else f"{b[key]:.{digits}f}"
            lines.append(
                f"| {label} | {row['parameters'] / 1e6:.2f}M ({row['parameter_ratio']:.2f}) | "
                f"{row['checkpoint_bytes'] / 1e6:.1f} MB ({row['checkpoint_ratio']:.2f}) | "
                f"{row.get('lstm_size_ratio', 1.0):.2f} | {cell(b1, 'ms_per_utterance', 1)} | "
                f"{cell(b1, 'real_time_factor', 3)} | {cell(b1, 'speedup')} ({cell(b1, 'theoretical_lstm_speedup')}) | "
                f"{cell(b16, 'ms_per_utterance', 1)} | {cell(b16, 'speedup')} ({cell(b16, 'theoretical_lstm_speedup')}) | "
                f"{cell(b1, 'greedy_ms_per_utterance', 1)} ({b1.get('greedy_tokens', '–')}) |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="default", help="'default', an ASR checkpoint, or 'toy' (tiny untrained)")
    parser.add_argument("--budgets", default="0.5,0.4,0.3")
    parser.add_argument("--search-results", type=Path, help="search.json with best_known (default: beside the output)")
    parser.add_argument("--utterances", type=int, default=64, help="test utterances timed")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large-preset", default="large", help="preset timed at the same fractions ('' to skip)")
    parser.add_argument("--large-utterances", type=int, default=8)
    parser.add_argument("--output-dir", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick_defaults(parser, args, QUICK)
    set_threads(args.threads)
    budgets, batch_sizes = parse_floats(args.budgets), parse_ints(args.batches)
    log = lambda line: print(line, flush=True)  # noqa: E731

    if args.target == "toy":
        torch.manual_seed(0)
        dense, name, note = build_model("tiny").eval(), "tiny preset (untrained)", "**toy**: tiny untrained model, synthetic input"
        durations = [3.0] * args.utterances
        workloads = {b: synthetic_workload(durations, b, dense.config.n_mels) for b in batch_sizes}
    else:
        from asr.default import default_checkpoint, load_split

        path = default_checkpoint() if args.target == "default" else Path(args.target)
        dense, tokenizer, _ = load_checkpoint(path)
        name, note = f"{path.name} (trained)", ""
        utterances = load_split("test")[: args.utterances]
        durations = [u.duration for u in utterances]
        workloads = {b: real_workload(utterances, tokenizer, b) for b in batch_sizes}
    search_json = args.search_results or output_path("search.json", args.output_dir)
    searched = searched_ranks(search_json, dense)
    configs = _configs(dense, budgets, searched)
    blocks = [measure_model(name, dense, configs, workloads, args.repeats, log)]

    if args.large_preset:
        torch.manual_seed(0)
        large = build_model(args.large_preset).eval()
        large_configs = {label: transfer_fractions(_matrices(dense), ranks, _matrices(large))
                         for label, ranks in configs.items()}
        large_durations = (durations * args.large_utterances)[: args.large_utterances]
        large_work = {b: synthetic_workload(large_durations, min(b, len(large_durations)), large.config.n_mels)
                      for b in batch_sizes}
        blocks.append(measure_model(f"{args.large_preset} preset (untrained, fixed decoder steps)", large,
                                    large_configs, large_work, args.repeats, log))

    payload = {"meta": run_metadata(quick=args.quick), "note": note,
               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "search_results_used": str(search_json) if searched else None, "models": blocks}
    publish("inference", payload, summary_markdown(payload), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
