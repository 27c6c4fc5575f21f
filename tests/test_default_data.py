"""The default corpus's training data: espeak-ng's split, and Flite's where it is installed."""

import logging
from pathlib import Path

from asr.corpus import CorpusPaths
from asr.default import training_manifests


def test_training_data_adds_flite_only_where_it_is_installed(monkeypatch, caplog):
    asked = []

    def fake_ensure_corpus(progress=None, splits=None):
        asked.append(tuple(splits))
        return CorpusPaths(Path("/corpus"))

    monkeypatch.setattr("asr.corpus.ensure_corpus", fake_ensure_corpus)
    monkeypatch.setattr("asr.corpus.flite.flite_available", lambda: True)
    assert training_manifests() == [Path("/corpus/train.jsonl"), Path("/corpus/train_flite.jsonl")]
    monkeypatch.setattr("asr.corpus.flite.flite_available", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert training_manifests() == [Path("/corpus/train.jsonl")]
    assert asked == [("train", "train_flite"), ("train",)]
    assert "Flite is not installed: training on espeak-ng's voices only (apt-get install flite)" in caplog.text
