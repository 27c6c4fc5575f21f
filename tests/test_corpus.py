"""Tests for the synthetic corpus: config, sentences, augmentation and tiny generation."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from asr.corpus import SPLITS, CorpusConfig, CorpusPaths, default_cache_dir, ensure_corpus
from asr.corpus.augment import (
    AugmentConfig,
    add_noise,
    augment,
    band_limit,
    reverberate,
    speed_perturb,
)
from asr.corpus.build import corpus_key
from asr.manifest import read_manifest
from asr.text import normalise_text

needs_wordfreq = pytest.mark.skipif(
    importlib.util.find_spec("wordfreq") is None,
    reason="wordfreq (the 'corpus' extra) is not installed",
)
needs_espeak = pytest.mark.skipif(
    importlib.util.find_spec("espeakng_loader") is None
    or importlib.util.find_spec("wordfreq") is None,
    reason="espeakng_loader and wordfreq (the 'corpus' extra) are needed to synthesise speech",
)


# Config -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vocabulary_size": 10}, r"vocabulary_size must be at least 100; got 10"),
        ({"min_words": 5, "max_words": 4}, r"min_words=5, max_words=4"),
        ({"test_utterances": 0}, r"test_utterances must be a positive integer; got 0"),
        ({"rate_range": (50, 200)}, r"rate_range must be \(min, max\) with 80 <= min"),
        ({"pitch_range": (60, 40)}, r"pitch_range"),
        ({"audio_format": "mp3"}, r"audio_format must be 'flac' or 'wav'; got 'mp3'"),
        ({"unseen_accents": (), "unseen_variants": ()}, r"needs held-out voices"),
        ({"free_sequence_fraction": 1.5}, r"free_sequence_fraction must be in \[0, 1\]; got 1.5"),
    ],
)
def test_config_rejects_bad_values(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CorpusConfig(**changes)


def test_augment_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match=r"AugmentConfig.fraction must be in \[0, 1\]; got 2"):
        AugmentConfig(fraction=2)
    with pytest.raises(ValueError, match=r"reverb_seconds"):
        AugmentConfig(reverb_seconds=(0.5, 0.1))


def test_default_config_sizes_follow_the_plan() -> None:
    config = CorpusConfig()
    assert config.test_utterances >= 1000 and config.unseen_utterances >= 1000
    assert config.vocabulary_size >= 10_000
    assert corpus_key(config) == corpus_key(CorpusConfig())
    assert corpus_key(config) != corpus_key(CorpusConfig(seed=1))


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHRINKML_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "corpus"
    monkeypatch.delenv("SHRINKML_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "shrinkml" / "corpus"


# Sentences ----------------------------------------------------------------------------
@needs_wordfreq
def test_default_vocabulary_is_broad_and_normalised() -> None:
    from asr.corpus.sentences import english_vocabulary

    words, frequencies = english_vocabulary(CorpusConfig().vocabulary_size)
    assert len(set(words)) == len(words) >= 10_000
    assert all(normalise_text(w) == w and w.replace("'", "").isalpha() for w in words)
    assert np.all(np.diff(frequencies) <= 0)  # most frequent first


@needs_wordfreq
def test_sentences_are_seeded_distinct_normalised_and_within_length() -> None:
    from asr.corpus.sentences import SentenceGenerator

    def draw(seed: int) -> list[str]:
        stream = SentenceGenerator(
            seed=seed, vocabulary_size=2000, min_words=3, max_words=12
        ).distinct_sentences()
        return [next(stream) for _ in range(300)]

    sentences = draw(0)
    assert sentences == draw(0) and sentences != draw(1)
    assert len(set(sentences)) == len(sentences)
    assert all(normalise_text(s) == s for s in sentences)
    assert {len(s.split()) for s in sentences} <= set(range(3, 13))
    assert len({w for s in sentences for w in s.split()}) > 500  # not a small grammar


# Augmentation -------------------------------------------------------------------------
def _speechlike(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr_db: float) -> None:
    x = _speechlike()
    y = add_noise(x, snr_db, np.random.default_rng(0), "pink")
    measured = 10 * np.log10(
        np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2)
    )
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_speed_filter_and_reverb_shapes() -> None:
    x = _speechlike()
    assert speed_perturb(x, 1.1, 16000).shape == (14546,)
    assert speed_perturb(x, 0.9, 16000).shape == (17778,)
    assert reverberate(x, 0.3, np.random.default_rng(0), 16000).shape == x.shape
    low = band_limit(np.sin(2 * np.pi * 60 * np.arange(16000) / 16000).astype(np.float32), 16000)
    assert np.max(np.abs(low)) < 0.05  # 60 Hz hum is outside the telephone band


def test_augment_is_reproducible_and_describes_itself() -> None:
    x = _speechlike()
    a, described = augment(x, AugmentConfig(), np.random.default_rng(3), 16000)
    b, _ = augment(x, AugmentConfig(), np.random.default_rng(3), 16000)
    assert np.array_equal(a, b) and described
    assert set(described.split("+")) and all(
        step.startswith(("speed", "reverb", "band", "noise")) for step in described.split("+")
    )


# Generation ---------------------------------------------------------------------------
def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "corpus.json"
    }


@pytest.fixture(scope="module")
def tiny_corpora(tmp_path_factory) -> tuple[CorpusPaths, CorpusPaths, list[tuple[int, int]]]:
    if (
        importlib.util.find_spec("espeakng_loader") is None
        or importlib.util.find_spec("wordfreq") is None
    ):
        pytest.skip(
            "espeakng_loader and wordfreq (the 'corpus' extra) are needed to synthesise speech"
        )
    calls: list[tuple[int, int]] = []
    first = ensure_corpus(
        CorpusConfig.tiny(),
        tmp_path_factory.mktemp("a"),
        lambda d, t: calls.append((d, t)),
        workers=2,
    )
    second = ensure_corpus(CorpusConfig.tiny(), tmp_path_factory.mktemp("b"), workers=1)
    return first, second, calls


@needs_espeak
def test_tiny_corpus_is_byte_identical_across_runs_and_worker_counts(tiny_corpora) -> None:
    first, second, calls = tiny_corpora
    assert first.root.name == second.root.name == corpus_key(CorpusConfig.tiny())
    digest = _digest(first.root)
    assert len([name for name in digest if name.endswith(".flac")]) == 42
    assert digest == _digest(second.root)
    assert calls[0] == (0, 42) and calls[-1] == (42, 42)


@needs_espeak
def test_tiny_corpus_splits_are_disjoint_and_unseen_voices_are_new(tiny_corpora) -> None:
    paths = tiny_corpora[0]
    manifests = {split: read_manifest(paths.manifest(split), strict=True) for split in SPLITS}
    config = CorpusConfig.tiny()
    for split, manifest in manifests.items():
        assert len(manifest) == config.utterances(split)
        for u in manifest:
            assert u.normalised_text == u.text
            assert u.extra["words"] == len(u.text.split())
            assert set(u.extra["voice"]) == {"accent", "variant", "rate", "pitch"}
    texts = {split: {u.text for u in m} for split, m in manifests.items()}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            assert not texts[a] & texts[b], (a, b)
    trained = [u.extra["voice"] for split in ("train", "dev", "test") for u in manifests[split]]
    assert not {v["accent"] for v in trained} & set(config.unseen_accents)
    assert not {v["variant"] for v in trained} & set(config.unseen_variants)
    for u in manifests["unseen"]:
        voice = u.extra["voice"]
        assert (
            voice["accent"] in config.unseen_accents or voice["variant"] in config.unseen_variants
        )
    assert {u.extra["augment"] != "none" for u in manifests["train"]} == {True, False}
    assert paths.info()["splits"]["train"]["utterances"] == config.train_utterances


@needs_espeak
def test_ensure_corpus_returns_a_finished_corpus_at_once_and_ignores_unfinished_ones(
    tiny_corpora, tmp_path, monkeypatch
) -> None:
    paths = tiny_corpora[0]
    cache = paths.root.parent

    def no_generation(*args, **kwargs):
        raise AssertionError("a finished corpus must not be generated again")

    monkeypatch.setattr("asr.corpus.build._generate", no_generation)
    assert ensure_corpus(CorpusConfig.tiny(), cache) == paths

    # A folder left by a dead run never counts as the corpus, and is cleared by the next run.
    dead = tmp_path / f".{corpus_key(CorpusConfig.tiny(seed=5))}.tmp-999999999-deadbeef"
    dead.mkdir()
    with pytest.raises(AssertionError, match="must not be generated again"):
        ensure_corpus(CorpusConfig.tiny(seed=5), tmp_path)
    assert not dead.exists()
    assert os.listdir(tmp_path) == []
    assert json.loads((paths.root / "corpus.json").read_text())["key"] == paths.root.name
