import numpy as np
import pytest

from asr.subset import corpus_wer, random_subsets, select_subset, spearman


def _synthetic(n_configs=40, n_utts=300, seed=0):
    """Utterances with different sensitivity to compression: some track it, some are noise."""
    rng = np.random.default_rng(seed)
    severity = np.sort(rng.uniform(0, 1, n_configs))
    words = rng.integers(3, 20, n_utts).astype(float)
    sensitivity = rng.uniform(0, 1, n_utts) * (rng.uniform(size=n_utts) < 0.5)
    rates = 0.05 + np.outer(severity, sensitivity) + rng.uniform(0, 0.4, (n_configs, n_utts))
    errors = rng.binomial(words.astype(int)[None, :], np.clip(rates, 0, 1)).astype(float)
    return errors, words


def test_selected_subset_beats_random_on_held_out_configs():
    errors, words = _synthetic()
    train, held = errors[::2], errors[1::2]
    chosen = select_subset(train, words, 40)
    assert len(set(chosen)) == 40
    full_held = corpus_wer(held, words)
    ours = spearman(corpus_wer(held, words, chosen), full_held)
    randoms = [spearman(corpus_wer(held, words, s), full_held) for s in random_subsets(len(words), 40, 10)]
    assert ours > np.median(randoms)
    assert ours > 0.9


def test_spearman_matches_known_values():
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(0.9486833, abs=1e-6)


def test_errors():
    errors, words = _synthetic(5, 10)
    with pytest.raises(ValueError, match=r"subset size 11 outside \[1, 10\]"):
        select_subset(errors, words, 11)
    with pytest.raises(ValueError, match="at least 3 probe configurations"):
        select_subset(errors[:2], words, 3)
    with pytest.raises(ValueError, match="words has shape"):
        select_subset(errors, words[:5], 3)


def test_reference_lets_a_restricted_pool_track_the_whole_one():
    errors, words = _synthetic(seed=1)
    full = corpus_wer(errors, words)
    allowed = np.arange(0, len(words), 2)  # e.g. the short utterances only
    picked = select_subset(errors[:, allowed], words[allowed], 30, reference=full)
    chosen = allowed[picked]
    assert set(chosen) <= set(allowed.tolist())
    # It matches the whole pool's WER level, not just the allowed half's.
    assert abs(corpus_wer(errors, words, chosen).mean() - full.mean()) < 0.02
    with pytest.raises(ValueError, match="reference has shape"):
        select_subset(errors, words, 3, reference=full[:5])
