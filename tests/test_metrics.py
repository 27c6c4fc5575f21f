"""WER/CER scoring and the paired bootstrap used to compare compressed models."""

import numpy as np
import pytest

from asr.metrics import error_rates, paired_wer_difference, word_errors

REFS = ["the cat sat on the mat", "hello world", "one two three four"]


def test_error_rates_count_substitutions_deletions_insertions():
    hyps = ["the cat sat on a mat", "hello there world", "one two four"]
    rates = error_rates(REFS, hyps)
    # 1 substitution + 1 insertion + 1 deletion over 12 reference words.
    assert (rates.word_errors, rates.reference_words, rates.utterances) == (3, 12, 3)
    assert rates.wer == pytest.approx(3 / 12)
    per_utterance = [word_errors(r, h) for r, h in zip(REFS, hyps)]
    assert per_utterance == [(1, 6), (1, 2), (1, 4)]
    assert error_rates(REFS, REFS).wer == 0.0 and error_rates(REFS, REFS).cer == 0.0


def test_error_rates_reject_unpaired_or_empty_input():
    with pytest.raises(ValueError, match="got 3 references but 1 hypotheses"):
        error_rates(REFS, ["x"])
    with pytest.raises(ValueError, match="normalises to nothing"):
        error_rates(["?!"], ["x"])


def test_bootstrap_of_identical_systems_is_exactly_zero():
    errors, words = [1, 0, 3, 2], [5, 4, 6, 3]
    diff = paired_wer_difference(errors, errors, words, resamples=200)
    assert (diff.difference, diff.low, diff.high) == (0.0, 0.0, 0.0)


def test_bootstrap_interval_excludes_zero_only_for_a_consistent_win():
    rng = np.random.default_rng(0)
    words = rng.integers(3, 15, size=400)
    base = rng.binomial(words, 0.2)
    better = np.maximum(base - rng.binomial(1, 0.5, size=400), 0)  # fewer errors on many utterances
    win = paired_wer_difference(better, base, words, resamples=1000)
    assert win.difference == pytest.approx((better.sum() - base.sum()) / words.sum())
    assert win.wer_a < win.wer_b and win.high < 0
    assert win.low <= win.difference <= win.high
    # Two independent draws of the same error rate: the interval straddles zero.
    other = rng.binomial(words, 0.2)
    tie = paired_wer_difference(other, base, words, resamples=1000)
    assert tie.low < 0 < tie.high
    # A wider confidence level gives a wider interval; the same seed the same answer.
    wide = paired_wer_difference(other, base, words, resamples=1000, confidence=0.99)
    assert wide.high - wide.low > tie.high - tie.low
    assert paired_wer_difference(other, base, words, resamples=1000) == tie


def test_bootstrap_rejects_mismatched_input():
    with pytest.raises(ValueError, match="got 2, 3 and 3"):
        paired_wer_difference([1, 2], [1, 2, 3], [4, 4, 4])
    with pytest.raises(ValueError, match="confidence must be in"):
        paired_wer_difference([1], [1], [1], confidence=1.0)
