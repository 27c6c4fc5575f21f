"""The default corpus's training data: espeak-ng's split, and Flite's where it is installed."""

import logging
from pathlib import Path

from asr.corpus import CorpusPaths
from asr.default import training_manifests


def test_training_data_adds_flite_where_it_is_installed_or_already_made(monkeypatch, caplog, tmp_path):
    asked = []

    def fake_ensure_corpus(progress=None, splits=None):
        asked.append(tuple(splits))
        return CorpusPaths(Path("/corpus"))

    monkeypatch.setattr("asr.corpus.ensure_corpus", fake_ensure_corpus)
    monkeypatch.setattr("asr.corpus.flite.flite_available", lambda: True)
    espeak = [Path("/corpus/train.jsonl"), Path("/corpus/train_extra.jsonl")]
    assert training_manifests() == [*espeak, Path("/corpus/train_flite.jsonl")]
    monkeypatch.setattr("asr.corpus.flite.flite_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert training_manifests() == espeak
    pair = ("train", "train_extra")
    assert asked == [pair, (*pair, "train_flite"), pair, pair]
    assert "Flite is not installed: training without train_flite" in caplog.text
    made = tmp_path / "train_flite.jsonl"  # made where Flite was installed, then copied here
    made.write_text("")
    monkeypatch.setattr("asr.corpus.ensure_corpus", lambda progress=None, splits=None: CorpusPaths(tmp_path))
    assert training_manifests() == [tmp_path / "train.jsonl", tmp_path / "train_extra.jsonl", made]
