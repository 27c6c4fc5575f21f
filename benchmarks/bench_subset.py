"""Choose the search subset and measure how representative it is.

1. Decode a pool of dev utterances under probe compressions of the shipped model: random
   per-layer rank choices whose size ratio lies in ``--probe-sizes`` (default 0.2–0.6,
   around the budgets searched, where configurations differ by a few WER points and are
   hard to rank; probes spanning 0.1–1.0 are ranked correctly by almost any subset).
2. Select ``--size`` utterances greedily on the first ``--select-configs`` probes
   (:func:`asr.subset.select_subset`), from the utterances at most ``--max-duration``
   seconds long (decoding time grows with audio, and the subset is decoded once per search
   evaluation), matching the WER of the *whole* pool.
3. On ``--eval-configs`` *other* probes, report the Spearman rank correlation between subset
   WER and full-pool WER, against the median over 10 random subsets of the same size under
   the same duration limit (and, for reference, without it).

Writes ``benchmarks/results/subset.json`` and (with ``--write-subset``) the shipped
``asr/pretrained/search_subset.json``; also times one evaluation of the shipped model on the
chosen subset.

Run: ``python -m benchmarks.bench_subset [--write-subset]`` (the defaults are the settings
the shipped subset was chosen with; ``make bench`` runs a smaller pool into
``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from asr.checkpoint import load_checkpoint
from asr.data import prepare_feature_batches
from asr.default import SEARCH_SUBSET, default_checkpoint, load_split
from asr.evaluate import decode_batches
from asr.features import LogMelFrontend
from asr.metrics import word_errors
from asr.subset import corpus_wer, random_subsets, select_subset, spearman
from asr.target import asr_target
from benchmarks.common import RESULTS, run_metadata, write_result
from shrinkml_env.plan import CompressionPlan
from shrinkml_env.search_space import DEFAULT_MENU


def probe_actions(
    plan: CompressionPlan,
    count: int,
    rng: np.random.Generator,
    size_band: tuple[float, float] = (0.0, 1.0),
) -> list[list[int]]:
    """Random per-layer menu actions around a random overall severity, kept only when the
    size ratio lies in ``size_band``: probes near the budgets a search works at are the hard
    ones to rank (they differ by a few WER points), so that is where the subset must track the
    full set."""
    low, high = size_band
    menu_size = plan.menu.size
    probes: list[list[int]] = []
    for _ in range(10_000 * count):
        if len(probes) == count:
            return probes
        base = rng.integers(0, menu_size)
        actions = [int(a) for a in np.clip(base + rng.integers(-3, 4, plan.n_units), 0, menu_size - 1)]
        if low <= plan.params(plan.ranks(actions)) / plan.dense_total <= high:
            probes.append(actions)
    raise ValueError(f"found only {len(probes)} of {count} probes with size ratio in [{low}, {high}]; widen --probe-sizes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=600, help="dev utterances decoded per probe")
    parser.add_argument("--size", type=int, default=100, help="subset size")
    parser.add_argument("--select-configs", type=int, default=12)
    parser.add_argument("--eval-configs", type=int, default=30)
    parser.add_argument(
        "--probe-sizes",
        default="0.2,0.6",
        help="LOW,HIGH size ratios the probe compressions fall in (default: around the budgets searched)",
    )
    parser.add_argument(
        "--max-duration",
        type=float,
        default=3.5,
        help="only utterances at most this many seconds long may enter the subset (evaluation time "
        "grows with audio); the full-pool WER still covers every utterance; 0: no limit",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-subset", action="store_true", help="ship the chosen ids")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (default: 2, what a search evaluates with on this machine)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where the JSON goes (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.max_duration < 0:
        parser.error(f"--max-duration must be >= 0 seconds (0: no limit); got {args.max_duration}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1; got {args.threads}")
    torch.set_num_threads(args.threads)
    try:
        low, high = (float(x) for x in args.probe_sizes.split(","))
    except ValueError:
        parser.error(f"--probe-sizes must be LOW,HIGH (two size ratios, e.g. 0.2,0.6); got {args.probe_sizes!r}")

    checkpoint = default_checkpoint()
    model, tokenizer, meta = load_checkpoint(checkpoint)
    pool = load_split("dev")[: args.pool]
    batches = prepare_feature_batches(pool, LogMelFrontend(), tokenizer)
    order = [u for b in batches for u in b.ids]
    by_id = {u.id: u for u in pool}
    utterances = [by_id[i] for i in order]
    words = np.array([len(u.normalised_text.split()) for u in utterances], dtype=np.float64)
    target = asr_target(checkpoint, utterances[:1])  # only its model and layers are used here
    plan = CompressionPlan(target, DEFAULT_MENU, "layer")
    rng = np.random.default_rng(args.seed)
    total = args.select_configs + args.eval_configs
    probes = probe_actions(plan, total, rng, (low, high))
    errors = np.zeros((total, len(utterances)))
    sizes = []
    started = time.perf_counter()
    for c, actions in enumerate(probes):
        ranks = plan.ranks(actions)
        plan.search_model.apply(plan.rank_map(ranks))
        hyps = decode_batches(plan.search_model.model, tokenizer, batches)
        errors[c] = [word_errors(u.text, h)[0] for u, h in zip(utterances, hyps)]
        sizes.append(plan.params(ranks) / plan.dense_total)
        print(f"probe {c + 1}/{total}: size {sizes[-1]:.3f} WER {errors[c].sum() / words.sum():.4f}", file=sys.stderr)
    decode_seconds = time.perf_counter() - started

    select, held = errors[: args.select_configs], errors[args.select_configs :]
    durations = np.array([u.duration for u in utterances])
    eligible = np.flatnonzero(durations <= (args.max_duration or np.inf))
    if len(eligible) < args.size:
        parser.error(f"only {len(eligible)} pool utterances are at most {args.max_duration} s; need --size {args.size}")
    # Selection sees only eligible utterances but matches the WER of the whole pool.
    picked = select_subset(select[:, eligible], words[eligible], args.size, seed=args.seed, reference=corpus_wer(select, words))
    chosen = [int(eligible[i]) for i in picked]
    full_held = corpus_wer(held, words)
    ours = spearman(corpus_wer(held, words, chosen), full_held)
    # Random subsets under the same duration limit, and unrestricted ones.
    randoms = [
        spearman(corpus_wer(held, words, eligible[s]), full_held)
        for s in random_subsets(len(eligible), args.size, 10, seed=args.seed + 1)
    ]
    randoms_any = [
        spearman(corpus_wer(held, words, s), full_held)
        for s in random_subsets(len(utterances), args.size, 10, seed=args.seed + 1)
    ]
    chosen_ids = [utterances[i].id for i in chosen]

    # Time one evaluation of the dense model on the chosen subset (features precomputed).
    subset_batches = prepare_feature_batches([by_id[i] for i in chosen_ids], LogMelFrontend(), tokenizer)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        decode_batches(model, tokenizer, subset_batches)
        times.append(time.perf_counter() - start)

    result = {
        **run_metadata(),
        "checkpoint": str(checkpoint.name),
        "checkpoint_updates": meta.get("updates"),
        "n_utterances": args.size,
        "pool_utterances": len(utterances),
        "n_configs": args.eval_configs,
        "selection_configs": args.select_configs,
        "spearman": ours,
        "random_spearman_median": statistics.median(randoms),
        "random_spearman": randoms,
        "random_spearman_any_duration_median": statistics.median(randoms_any),
        "probe_size_band": [low, high],
        "max_duration": args.max_duration,
        "subset_audio_seconds": float(durations[chosen].sum()),
        "held_out_wer_spread": float(full_held.max() - full_held.min()),
        "held_out_full_wer": full_held.tolist(),
        "held_out_subset_wer": corpus_wer(held, words, chosen).tolist(),
        "probe_size_ratios": sizes,
        "subset_eval_seconds_median": statistics.median(times),
        "probe_decode_seconds_total": decode_seconds,
    }
    path = write_result("subset.json", result, args.output_dir)
    if args.write_subset:
        SEARCH_SUBSET.write_text(
            json.dumps(
                {
                    "ids": chosen_ids,
                    "split": "dev",
                    "method": "greedy Pearson selection over probe compressions (asr.subset)",
                    "chosen_for": str(checkpoint.name),
                    "spearman_held_out": ours,
                    "random_spearman_median": statistics.median(randoms),
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    print(path)
    print(json.dumps({k: result[k] for k in ("spearman", "random_spearman_median", "n_utterances", "n_configs", "subset_eval_seconds_median")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
