"""Word and character error rates through jiwer, on normalised text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer

from asr.text import normalise_text

__all__ = ["ErrorRates", "error_rates", "word_errors"]


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
