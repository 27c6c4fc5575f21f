"""Choosing a small search subset whose WER ranks compressed models like the full dev set.

The paper's third practical consideration: each search step must be quick, so episodes are
scored on a few hundred utterances, and those must be *representative*. Here that is made
measurable. Decode the full dev set under a set of probe compressions (rank vectors) and
record, per utterance, its word errors under each; then pick utterances greedily so that the
subset's WER across the probes correlates as closely as possible with the full set's
(Pearson), with a small pull towards the same absolute WER. Representativeness is then
checked on *other* probes, by Spearman rank correlation.

Shapes: ``C`` probe configurations; ``U`` utterances.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["corpus_wer", "random_subsets", "select_subset", "spearman"]


def corpus_wer(errors: np.ndarray, words: np.ndarray, subset: Sequence[int] | None = None) -> np.ndarray:
    """WER of each configuration over ``subset`` (all utterances when None).

    Args:
        errors: ``(C, U)`` word errors of each utterance under each configuration.
        words: ``(U,)`` reference words per utterance.
    """
    if subset is None:
        return errors.sum(axis=1) / words.sum()
    idx = np.asarray(subset)
    return errors[:, idx].sum(axis=1) / words[idx].sum()


def _pearson_rows(candidates: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``candidates (K, C)`` with ``target (C,)``."""
    c = candidates - candidates.mean(axis=1, keepdims=True)
    t = target - target.mean()
    denom = np.sqrt((c**2).sum(axis=1) * (t**2).sum())
    return np.where(denom > 0, (c @ t) / np.maximum(denom, 1e-30), -1.0)


def select_subset(
    errors: np.ndarray,
    words: np.ndarray,
    size: int,
    *,
    level_weight: float = 0.5,
    seed: int = 0,
    reference: np.ndarray | None = None,
) -> list[int]:
    """Greedy forward selection of ``size`` utterances.

    At each step the utterance added is the one that maximises
    ``pearson(subset WER, full WER) - level_weight · |mean subset WER - mean full WER| / mean full WER``
    across the probe configurations.

    Args:
        errors: ``(C, U)`` word errors per configuration and utterance (C >= 3).
        words: ``(U,)`` reference words per utterance.
        size: utterances to choose (``1 <= size <= U``).
        level_weight: weight of matching the absolute WER level.
        seed: breaks ties and orders the candidates reproducibly.
        reference: ``(C,)`` WER per configuration to track; by default the WER over all ``U``
            utterances. Pass the WER of a larger pool when ``errors`` holds only the
            utterances allowed into the subset (for example the short ones).

    Returns:
        Indices of the chosen utterances, in the order they were chosen.
    """
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(words, dtype=np.float64)
    n_configs, n_utts = errors.shape
    if words.shape != (n_utts,):
        raise ValueError(f"words has shape {words.shape}; expected ({n_utts},) to match errors {errors.shape}")
    if not 1 <= size <= n_utts:
        raise ValueError(f"subset size {size} outside [1, {n_utts}] (the number of utterances)")
    if n_configs < 3:
        raise ValueError(f"need at least 3 probe configurations to correlate; got {n_configs}")
    full = corpus_wer(errors, words) if reference is None else np.asarray(reference, dtype=np.float64)
    if full.shape != (n_configs,):
        raise ValueError(f"reference has shape {full.shape}; expected ({n_configs},), one WER per configuration")
    level = max(float(full.mean()), 1e-9)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_utts)  # candidate order: ties go to a random, reproducible choice
    chosen: list[int] = []
    available = np.ones(n_utts, dtype=bool)
    sum_errors = np.zeros(n_configs)
    sum_words = 0.0
    for _ in range(size):
        cand = order[available[order]]
        trial = (sum_errors[None, :] + errors[:, cand].T) / (sum_words + words[cand])[:, None]
        score = _pearson_rows(trial, full) - level_weight * np.abs(trial.mean(axis=1) - full.mean()) / level
        best = int(cand[int(np.argmax(score))])
        chosen.append(best)
        available[best] = False
        sum_errors += errors[:, best]
        sum_words += words[best]
    return chosen


def random_subsets(n_utts: int, size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` random subsets of ``size`` utterances (for comparison)."""
    rng = np.random.default_rng(seed)
    return [rng.choice(n_utts, size=size, replace=False) for _ in range(count)]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""

    def ranks(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        order = np.argsort(x, kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=np.float64)
        for value in np.unique(x):
            tie = x == value
            if tie.sum() > 1:
                r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else 0.0
