"""Tests for the synthetic corpus: config, sentences, augmentation and tiny generation."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from asr.corpus import SPLITS, CorpusConfig, default_cache_dir, ensure_corpus
from asr.corpus.augment import (
    AugmentConfig,
    add_noise,
    apply_response,
    augment,
    band_limit,
    coloured_noise,
    reverberate,
    room_response,
    speed_perturb,
)
from asr.corpus.build import corpus_key
from asr.corpus.config import FESTIVAL_SPLITS, FLITE_SPLITS, NATURAL_SPLITS, TRAINING_SPLITS
from asr.corpus.festival import festival_available
from asr.corpus.flite import FLITE_VOICES, FliteVoice, flite_available
from asr.corpus.natural import natural_sentences, wordnet_available, wordnet_fingerprint
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
        ({"natural_train_fraction": -0.1}, r"natural_train_fraction must be in \[0, 1\]; got -0.1"),
        ({"natural_utterances": 0}, r"natural_utterances must be a positive integer; got 0"),
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


def test_room_response_decays_by_60_db_over_its_rt60_and_keeps_a_unit_direct_path() -> None:
    response = room_response(0.4, np.random.default_rng(0), 16000)
    assert response.shape == (6400,) and response[0] == 1.0 and not response[1:32].any()
    # Schroeder's backward integral falls by 60 dB over rt60: -20 dB at a third of it.
    energy = np.cumsum((response[32:] ** 2)[::-1])[::-1]
    level = 10 * np.log10(energy / energy[0])
    assert level[int(0.4 / 3 * 16000) - 32] == pytest.approx(-20.0, abs=1.5)
    x = _speechlike()
    np.testing.assert_allclose(apply_response(x, np.array([1.0])), x, atol=1e-6)  # a bare direct path: no change
    wet = apply_response(x, response)
    assert wet.shape == x.shape and np.max(np.abs(wet)) == pytest.approx(np.max(np.abs(x)), rel=1e-5)


def test_an_unknown_noise_colour_is_refused_by_name() -> None:
    for call in (lambda: coloured_noise(100, "blue", np.random.default_rng(0)),
                 lambda: add_noise(_speechlike(), 10.0, np.random.default_rng(0), colour="blue")):
        with pytest.raises(ValueError, match=r"noise colour must be one of \('white', 'pink', 'brown'\); got 'blue'"):
            call()


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
    """Hash of every corpus file but ``corpus.json`` and hidden ones (locks, leftovers)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.name != "corpus.json"
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def _plant_unfinished_run(root: Path, split: str) -> list[Path]:
    """Leave what a run killed while finishing ``split`` would; returns the hidden leftovers."""
    staging = root / f".{split}.tmp-999999999-deadbeef"
    staging.mkdir()
    (staging / f"{split}-000000.flac").write_bytes(b"half written")
    (root / split).mkdir()  # audio moved into place, manifest never written
    (root / split / f"{split}-000000.flac").write_bytes(b"stale")
    manifest_tmp = root / f".{split}.jsonl.abc123"
    manifest_tmp.write_text("{}\n")
    return [staging, manifest_tmp]


def _made_splits() -> list[str]:
    """The splits a whole generation makes here: Festival's, Flite's and WordNet's only where
    installed."""
    return [
        s
        for s in SPLITS
        if (festival_available() or s not in FESTIVAL_SPLITS)
        and (flite_available() or s not in FLITE_SPLITS)
        and (wordnet_available() or s not in NATURAL_SPLITS)
    ]


@pytest.fixture(scope="module")
def tiny_corpora(tmp_path_factory) -> dict:
    """A tiny corpus generated whole, and one generated split by split after an interruption."""
    if (
        importlib.util.find_spec("espeakng_loader") is None
        or importlib.util.find_spec("wordfreq") is None
    ):
        pytest.skip(
            "espeakng_loader and wordfreq (the 'corpus' extra) are needed to synthesise speech"
        )
    calls: list[tuple[int, int]] = []
    whole = ensure_corpus(
        CorpusConfig.tiny(),
        tmp_path_factory.mktemp("a"),
        lambda d, t: calls.append((d, t)),
        workers=2,
    )
    cache = tmp_path_factory.mktemp("b")
    for split in ("dev", "test"):
        by_split = ensure_corpus(CorpusConfig.tiny(), cache, workers=1, splits=[split])
    dev_and_test = _digest(by_split.root), by_split.info()
    leftovers = _plant_unfinished_run(by_split.root, "unseen")
    assert ensure_corpus(CorpusConfig.tiny(), cache, workers=1) == by_split
    return {
        "whole": whole,
        "calls": calls,
        "by_split": by_split,
        "dev_and_test": dev_and_test,
        "leftovers": leftovers,
    }


@needs_espeak
def test_tiny_corpus_is_byte_identical_across_runs_worker_counts_and_splits(tiny_corpora) -> None:
    whole, by_split = tiny_corpora["whole"], tiny_corpora["by_split"]
    assert whole.root.name == by_split.root.name == corpus_key(CorpusConfig.tiny())
    digest = _digest(whole.root)
    config = CorpusConfig.tiny()
    count = sum(config.utterances(s) for s in _made_splits())
    assert len([name for name in digest if name.endswith(".flac")]) == count
    assert digest == _digest(by_split.root)
    assert tiny_corpora["calls"][0] == (0, count) and tiny_corpora["calls"][-1] == (count, count)
    assert by_split.info()["splits"] == whole.info()["splits"]
    assert by_split.info()["disk_megabytes"] == whole.info()["disk_megabytes"]


@needs_espeak
def test_splits_generated_alone_match_a_whole_generation(tiny_corpora) -> None:
    digest, info = tiny_corpora["dev_and_test"]
    whole = _digest(tiny_corpora["whole"].root)
    assert digest == {name: h for name, h in whole.items() if name.startswith(("dev", "test"))}
    assert set(info["splits"]) == {"dev", "test"}
    assert info["splits"]["test"] == tiny_corpora["whole"].info()["splits"]["test"]


@needs_espeak
def test_an_unfinished_split_is_cleared_and_redone(tiny_corpora) -> None:
    root = tiny_corpora["by_split"].root
    assert not any(path.exists() for path in tiny_corpora["leftovers"])
    assert _digest(root) == _digest(tiny_corpora["whole"].root)  # stale unseen audio replaced
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == sorted(
        [".corpus.json.lock", *(f".{split}.lock" for split in _made_splits())]
    )


@needs_espeak
def test_tiny_corpus_splits_are_disjoint_and_unseen_voices_are_new(tiny_corpora) -> None:
    paths = tiny_corpora["whole"]
    made = _made_splits()
    assert [s for s in SPLITS if paths.manifest(s).is_file()] == made
    manifests = {split: read_manifest(paths.manifest(split), strict=True) for split in made}
    config = CorpusConfig.tiny()
    for split, manifest in manifests.items():
        assert len(manifest) == config.utterances(split)
        for u in manifest:
            assert u.normalised_text == u.text
            assert u.extra["words"] == len(u.text.split())
            if split in FESTIVAL_SPLITS:
                assert u.extra["voice"]["synthesiser"] == "festival"
            elif split in FLITE_SPLITS:
                assert u.extra["voice"]["synthesiser"] == "flite"
                assert u.extra["voice"]["voice"] in FLITE_VOICES  # never kal: cross_synth's diphones
            else:
                assert set(u.extra["voice"]) == {"accent", "variant", "rate", "pitch"}
    texts = {split: {u.text for u in m} for split, m in manifests.items()}
    for i, a in enumerate(made):
        for b in made[i + 1 :]:
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
    for split in set(NATURAL_SPLITS) & set(made):  # people's sentences, never training's pool
        assert texts[split] <= set(natural_sentences("eval", config.seed, config.min_words, config.max_words))
        assert paths.info()["wordnet"] == {split: wordnet_fingerprint()}  # what they came from
    for split in set(TRAINING_SPLITS) & set(made):  # shaped for training: described so
        assert all({"augment", "voice_transform"} <= set(u.extra) for u in manifests[split])
    assert paths.info()["splits"]["train"]["utterances"] == config.train_utterances


@needs_espeak
def test_a_split_added_last_moves_no_other_splits_sentences_voices_or_seeds(monkeypatch) -> None:
    from asr.corpus.build import _plan

    config = replace(CorpusConfig.tiny(), train_extra_utterances=30)
    with_extra = [item for item in _plan(config) if item.split != "train_extra"]
    monkeypatch.setattr("asr.corpus.build.SPLITS", tuple(s for s in SPLITS if s != "train_extra"))
    assert with_extra == _plan(config)  # the corpus as it was before train_extra existed


@needs_espeak
def test_growing_the_last_split_keeps_its_first_utterances_and_every_other_split() -> None:
    from asr.corpus.build import _plan

    small = _plan(replace(CorpusConfig.tiny(), train_extra_utterances=20))
    grown = _plan(replace(CorpusConfig.tiny(), train_extra_utterances=50))
    assert len(grown) == len(small) + 30
    assert grown[: len(small)] == small  # same texts, voices and seeds: the same audio
    assert {item.split for item in grown[len(small):]} == {"train_extra"}


@needs_espeak
def test_ensure_corpus_returns_finished_splits_at_once_and_ignores_unfinished_ones(
    tiny_corpora, tmp_path, monkeypatch
) -> None:
    paths = tiny_corpora["whole"]
    cache = paths.root.parent

    def no_generation(*args, **kwargs):
        raise AssertionError("a finished split must not be generated again")

    monkeypatch.setattr("asr.corpus.build._generate", no_generation)
    assert ensure_corpus(CorpusConfig.tiny(), cache) == paths
    assert ensure_corpus(CorpusConfig.tiny(), cache, splits=("test", "dev")) == paths

    # A whole-corpus folder left by a dead run of the former generator is cleared.
    key = corpus_key(CorpusConfig.tiny(seed=5))
    dead = tmp_path / f".{key}.tmp-999999999-deadbeef"
    dead.mkdir()
    with pytest.raises(AssertionError, match="must not be generated again"):
        ensure_corpus(CorpusConfig.tiny(seed=5), tmp_path, splits=("unseen",))
    assert not dead.exists()
    assert os.listdir(tmp_path) == [key]
    assert json.loads((paths.root / "corpus.json").read_text())["key"] == paths.root.name


@needs_espeak
def test_an_interrupted_generation_leaves_no_split_behind(tmp_path) -> None:
    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_corpus(CorpusConfig.tiny(), tmp_path, interrupt, workers=1, splits=("dev",))
    root = tmp_path / corpus_key(CorpusConfig.tiny())
    assert sorted(p.name for p in root.iterdir()) == [".dev.lock"]


@pytest.mark.parametrize(
    ("splits", "error", "message"),
    [
        (
            ("dev", "validation"),
            ValueError,
            r"unknown split 'validation' in splits=\('dev', "
            r"'validation'\); accepted: train, dev, test, unseen, trimmed, cross_synth, train_flite, "
            r"natural, train_extra",
        ),
        ([], ValueError, r"splits is empty; name some of train, dev, test, unseen, trimmed"),
        ("test", TypeError, r"not a string; got 'test': pass \('test',\)"),
    ],
)
def test_ensure_corpus_rejects_bad_splits(splits, error, message, tmp_path) -> None:
    with pytest.raises(error, match=message):
        ensure_corpus(CorpusConfig.tiny(), tmp_path, splits=splits)
    assert os.listdir(tmp_path) == []


@needs_espeak
def test_tiny_corpus_onsets_levels_and_voices_vary_where_they_should(tiny_corpora) -> None:
    import soundfile

    paths = tiny_corpora["whole"]
    train = read_manifest(paths.manifest("train"), strict=True)
    onsets = [u.extra["onset"] for u in train]
    assert min(onsets) <= 0.0 < max(onsets)  # some clips start with speech, some after silence
    assert {u.extra["voice_transform"] != "none" for u in train} == {True, False}
    for u in read_manifest(paths.manifest("trimmed"), strict=True):
        assert u.extra["onset"] == u.extra["offset"] == 0.0
        audio, rate = soundfile.read(u.audio_filepath)
        first = audio[: int(0.01 * rate)]  # the first 10 ms already carry speech
        assert np.sqrt(np.mean(first**2)) > 1e-3 * np.max(np.abs(audio)), u.id
    for u in read_manifest(paths.manifest("test"), strict=True):
        assert 0.05 <= u.extra["onset"] <= 0.3


def test_festival_splits_without_festival_say_what_to_install(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("asr.corpus.build.festival_available", lambda voice="kal_diphone": False)
    with pytest.raises(FileNotFoundError, match=r"'cross_synth' is spoken by Festival.*apt-get install festival"):
        ensure_corpus(CorpusConfig.tiny(), tmp_path, splits=("cross_synth",))
    assert os.listdir(tmp_path) == []


def test_flite_splits_without_flite_say_what_to_install_and_are_skipped(tmp_path, monkeypatch, caplog) -> None:
    from asr.corpus.build import _makeable, corpus_key

    monkeypatch.setattr("asr.corpus.build.flite_available", lambda: False)
    with pytest.raises(FileNotFoundError, match=r"'train_flite' is spoken by Flite.*apt-get install flite"):
        ensure_corpus(CorpusConfig.tiny(), tmp_path, splits=("dev", "train_flite"))
    assert os.listdir(tmp_path) == []
    assert _makeable(["dev", "train_flite"], named=False) == ["dev"]  # every split asked for: skipped
    assert "Flite is not installed: skipping train_flite (apt-get install flite)" in caplog.text
    made = tmp_path / corpus_key(CorpusConfig.tiny()) / "train_flite.jsonl"  # made elsewhere, copied here
    made.parent.mkdir()
    made.write_text("")
    assert ensure_corpus(CorpusConfig.tiny(), tmp_path, splits=("train_flite",)).manifest("train_flite") == made


def test_flite_refuses_the_voices_that_cross_synth_speaks_with() -> None:
    with pytest.raises(ValueError, match=r"refused Flite voice 'kal16'; accepted: awb, rms, slt"):
        FliteVoice(voice="kal16")
    with pytest.raises(ValueError, match=r"'rms' ignores an intonation target; give pitch_mean_hz=None"):
        FliteVoice(voice="rms", pitch_mean_hz=120.0)


@pytest.mark.skipif(not flite_available(), reason="Flite is not installed (apt-get install flite)")
def test_flite_speaks_at_the_asked_rate_and_pitch() -> None:
    import parselmouth

    from asr.corpus.flite import synthesize_flite

    text = "the quick brown fox jumps over the lazy dog"
    slow_low = synthesize_flite(text, FliteVoice("slt", stretch=1.2, pitch_mean_hz=90.0), 16_000)
    fast_high = synthesize_flite(text, FliteVoice("slt", stretch=0.85, pitch_mean_hz=200.0), 16_000)
    assert slow_low.dtype == np.float32 and np.max(np.abs(slow_low)) <= 1.0
    assert len(slow_low) > 1.2 * len(fast_high)

    def median_pitch(audio: np.ndarray) -> float:
        f0 = parselmouth.Sound(audio.astype(np.float64), 16_000).to_pitch().selected_array["frequency"]
        return float(np.median(f0[f0 > 0]))

    assert median_pitch(slow_low) < 120 < 160 < median_pitch(fast_high)


def test_data_synth_makes_only_the_splits_named(tmp_path, capsys) -> None:
    from agents.cli import main

    assert main(["data", "synth", "--tiny", "--splits", "dev", "--cache-dir", str(tmp_path), "--workers", "1"]) == 0
    root = Path(capsys.readouterr().out.strip())
    assert (root / "dev.jsonl").is_file() and not (root / "train.jsonl").exists()
    assert main(["data", "synth", "--tiny", "--splits", "dev,bogus", "--cache-dir", str(tmp_path)]) == 2
    assert "unknown split 'bogus'" in capsys.readouterr().err
