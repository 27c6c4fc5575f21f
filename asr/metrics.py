"""Word and character error rates through jiwer, on normalised text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np

from asr.text import normalise_text

__all__ = ["ErrorRates", "WERDifference", "error_rates", "paired_wer_difference", "word_errors"]


@dataclass(frozen=True)
class ErrorRates:
    """Corpus-level error rates as fractions (jiwer's convention), with their raw counts."""

    wer: float
    cer: float
    word_errors: int
    reference_words: int
    utterances: int


def _check(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(
            f"got {len(references)} references but {len(hypotheses)} hypotheses; they must pair up"
        )
    if not references:
        raise ValueError("cannot score an empty list of utterances")


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) for one normalised pair."""
    ref = normalise_text(reference)
    if not ref:
        raise ValueError(f"reference {reference!r} normalises to nothing; it cannot be scored")
    out = jiwer.process_words(ref, normalise_text(hypothesis) or "")
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorRates:
    """WER and CER over a corpus (errors summed, then divided by reference length)."""
    _check(references, hypotheses)
    refs = [normalise_text(r) for r in references]
    if not all(refs):
        empty = next(r for r, n in zip(references, refs) if not n)
        raise ValueError(f"reference {empty!r} normalises to nothing; it cannot be scored")
    hyps = [normalise_text(h) for h in hypotheses]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    errors = words.substitutions + words.deletions + words.insertions
    return ErrorRates(
        wer=float(words.wer),
        cer=float(chars.cer),
        word_errors=int(errors),
        reference_words=int(words.hits + words.substitutions + words.deletions),
        utterances=len(refs),
    )


@dataclass(frozen=True)
class WERDifference:
    """WER of system A minus WER of system B on the same utterances, with a bootstrap interval.

    Negative means A makes fewer errors. The interval is the percentile interval of the
    difference over ``resamples`` resamplings of the utterances (with replacement), so it
    reflects how much the comparison depends on which utterances the test set happens to hold.
    """

    difference: float
    low: float
    high: float
    confidence: float
    resamples: int
    utterances: int
    wer_a: float
    wer_b: float

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def paired_wer_difference(
    errors_a: Sequence[int],
    errors_b: Sequence[int],
    words: Sequence[int],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> WERDifference:
    """Paired bootstrap of a corpus-level WER difference.

    Args:
        errors_a: word errors of system A per utterance (:func:`word_errors`).
        errors_b: word errors of system B on the same utterances, in the same order.
        words: reference words per utterance.
        resamples: bootstrap resamples.
        confidence: the interval's coverage, in ``(0, 1)``.
        seed: the resampling's random seed.
    """
    a, b, w = (np.asarray(x, dtype=np.float64) for x in (errors_a, errors_b, words))
    if not len(a) == len(b) == len(w) or len(w) == 0:
        raise ValueError(f"need the same, non-zero number of utterances for both systems and the references; "
                         f"got {len(a)}, {len(b)} and {len(w)}")
    if not 0.0 < confidence < 1.0 or resamples < 1:
        raise ValueError(f"confidence must be in (0, 1) and resamples >= 1; got {confidence}, {resamples}")
    n = len(w)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)  # (R, n)
    total_words = counts @ w
    # A resample of utterances without reference words cannot be scored (only possible with
    # tiny sets); leaving it out is the usual convention.
    valid = total_words > 0
    samples = (counts[valid] @ (a - b)) / total_words[valid]
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return WERDifference(
        difference=float((a.sum() - b.sum()) / w.sum()),
        low=float(low),
        high=float(high),
        confidence=confidence,
        resamples=int(valid.sum()),
        utterances=n,
        wer_a=float(a.sum() / w.sum()),
        wer_b=float(b.sum() / w.sum()),
    )
