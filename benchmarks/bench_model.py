"""How good the recogniser is: whole-split WER, CER and collapses, greedy and joint decoding.

Writes ``benchmarks/results/model.json``: for each checkpoint given (the shipped one by
default; ``--checkpoint`` again to compare, e.g. the previous shipped model), greedy WER,
CER and the share of utterances decoded to under half the reference's words ("short") on
every split of the default corpus (``dev``, ``test``, ``unseen``, ``trimmed``,
``cross_synth`` where Festival is installed, ``natural`` where WordNet is), and the same
for joint CTC/attention beam search on ``--joint-splits``. It also times one search-subset
evaluation (greedy, the search-time decoder, and joint) and reports the targets of the
issue beside the figures.

Run: ``python -m benchmarks.bench_model [--checkpoint A.pt --checkpoint B.pt] [--limit N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import RESULTS, run_metadata, write_result

# The targets ("A default recogniser worth compressing").
TARGETS = {
    "test_wer": 0.15,
    "unseen_wer": 0.25,
    "trimmed_over_test": 1.15,
    "trimmed_short_fraction": 0.01,
    "cross_synth_wer": 0.50,
    "search_evaluation_seconds": 2.0,
}


def _batches(tokenizer, utterances) -> list:
    from asr.data import prepare_feature_batches
    from asr.features import LogMelFrontend

    return prepare_feature_batches(utterances, LogMelFrontend(), tokenizer)


def _split_figures(model, tokenizer, batches, decoder) -> dict:
    from asr.evaluate import evaluate_batches

    result = evaluate_batches(model, tokenizer, batches, decoder)
    return {
        "wer": round(result.wer, 4),
        "cer": round(result.cer, 4),
        "short_fraction": round(result.short_fraction(), 4),
        "utterances": result.rates.utterances,
        "decoding_seconds": round(result.seconds, 2),
    }


def _search_evaluation_seconds(model, tokenizer, batches, decoder, repeats: int) -> float:
    from asr.evaluate import evaluate_batches

    times = []
    for _ in range(repeats):
        times.append(evaluate_batches(model, tokenizer, batches, decoder).seconds)
    return round(statistics.median(times), 3)


def measure(checkpoint: Path, splits: list[str], joint_splits: list[str], limit: int | None,
            joint_config, repeats: int, joint_limit: int | None = None) -> dict:
    from asr.checkpoint import load_checkpoint
    from asr.default import load_split

    model, tokenizer, meta = load_checkpoint(checkpoint)
    model.eval()
    out: dict = {"checkpoint": str(checkpoint), "updates": meta.get("updates"), "greedy": {}, "joint": {}}
    for split in splits:
        utterances = load_split(split)[:limit]
        out["greedy"][split] = _split_figures(model, tokenizer, _batches(tokenizer, utterances), None)
        print(f"{checkpoint.name} greedy {split}: {out['greedy'][split]}", file=sys.stderr, flush=True)
        if split in joint_splits:
            batches = _batches(tokenizer, utterances[:joint_limit])  # once, for both decoders
            out["joint"][split] = _split_figures(model, tokenizer, batches, joint_config)
            # Greedy on the very same utterances, for a paired comparison.
            same = _split_figures(model, tokenizer, batches, None)
            out["joint"][split]["greedy_same_utterances"] = {k: same[k] for k in ("wer", "cer", "short_fraction")}
            print(f"{checkpoint.name} joint {split}: {out['joint'][split]}", file=sys.stderr, flush=True)
    try:
        search = _batches(tokenizer, load_split("search"))  # features once, for both decoders
        out["search_evaluation_seconds"] = {
            "greedy": _search_evaluation_seconds(model, tokenizer, search, None, repeats),
            "joint": _search_evaluation_seconds(model, tokenizer, search, joint_config, 1),
        }
    except (FileNotFoundError, ValueError) as e:  # no subset for this corpus yet
        out["search_evaluation_seconds"] = {"error": str(e)}
    greedy = out["greedy"]
    if "test" in greedy:
        checks = {"test_wer": greedy["test"]["wer"] <= TARGETS["test_wer"]}
        if "unseen" in greedy:
            checks["unseen_wer"] = greedy["unseen"]["wer"] <= TARGETS["unseen_wer"]
        if "trimmed" in greedy:
            ratio = greedy["trimmed"]["wer"] / max(greedy["test"]["wer"], 1e-9)
            out["trimmed_over_test"] = round(ratio, 3)
            checks["trimmed_over_test"] = ratio <= TARGETS["trimmed_over_test"]
            checks["trimmed_short_fraction"] = (
                greedy["trimmed"]["short_fraction"] < TARGETS["trimmed_short_fraction"]
            )
        if "natural" in greedy:  # no target: people's sentences against generated ones
            ratio = greedy["natural"]["wer"] / max(greedy["test"]["wer"], 1e-9)
            out["natural_over_test"] = round(ratio, 3)
        if "cross_synth" in greedy:
            checks["cross_synth_wer"] = greedy["cross_synth"]["wer"] <= TARGETS["cross_synth_wer"]
        seconds = out["search_evaluation_seconds"].get("greedy")
        if seconds is not None:
            checks["search_evaluation_seconds"] = seconds <= TARGETS["search_evaluation_seconds"]
        out["targets_met"] = checks
    return out


def main(argv: list[str] | None = None) -> int:
    from asr.corpus.festival import festival_available
    from asr.corpus.natural import wordnet_available
    from asr.default import default_checkpoint
    from asr.joint_decoding import JointConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, action="append",
                        help="checkpoint to measure (repeatable; default: the shipped model)")
    parser.add_argument("--splits", nargs="+",
                        default=["dev", "test", "unseen", "trimmed", "cross_synth", "natural"])
    parser.add_argument("--joint-splits", nargs="*", default=["test", "trimmed", "cross_synth"],
                        help="splits also decoded with joint CTC/attention beam search")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--ctc-weight", type=float, default=0.3)
    parser.add_argument("--limit", type=int, help="first N utterances of each split only")
    parser.add_argument("--joint-limit", type=int, default=500,
                        help="first N utterances of each split for joint decoding (it costs ~10x greedy)")
    parser.add_argument("--repeats", type=int, default=3, help="timed search-subset evaluations (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1; got {args.limit}")
    torch.set_num_threads(args.threads)
    installed = {"cross_synth": festival_available(), "natural": wordnet_available()}
    splits = [s for s in args.splits if installed.get(s, True)]
    joint = JointConfig(beam_size=args.beam, ctc_weight=args.ctc_weight)
    started = time.perf_counter()
    checkpoints = args.checkpoint or [default_checkpoint()]
    results = [
        measure(c, splits, args.joint_splits, args.limit, joint, args.repeats, args.joint_limit)
        for c in checkpoints
    ]
    payload = {
        "meta": run_metadata(
            benchmark="model", splits=splits, limit=args.limit, joint_limit=args.joint_limit,
            joint={"beam_size": joint.beam_size, "ctc_weight": joint.ctc_weight,
                   "candidates": joint.candidates},
            seconds=round(time.perf_counter() - started, 1),
        ),
        "targets": TARGETS,
        "models": results,
    }
    print(write_result("model.json", payload, args.output_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
