"""Tests for natural sentences (WordNet's usage examples) and the corpus splits built on them."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path

import pytest

from asr.corpus import CorpusConfig, ensure_corpus
from asr.corpus.natural import natural_sentences, wordnet_available, wordnet_fingerprint

_LICENCE = "  1 This software and database is being provided to you, the LICENSEE, by  \n"


def _synset(offset: int, gloss: str) -> str:
    return f"{offset:08d} 05 n 01 word 0 000 | {gloss}  \n"


@pytest.fixture
def fake_wordnet(tmp_path, monkeypatch) -> Path:
    """A WordNet folder in the database's format: licence lines, then synsets whose gloss
    carries quoted examples; 60 speakable sentences in all, plus ones to be dropped."""
    lines = [_LICENCE]
    for i in range(60):
        lines.append(_synset(i, f'a gloss; "we saw {i} cats"; "we saw {i} cats"'))
    lines += [
        _synset(100, 'too short; "two words"'),
        _synset(101, 'a lone letter; "the letter b is silent here"'),
        _synset(102, 'an abbreviation; "the bbc broadcast it live"'),
        _synset(105, 'read otherwise; "Napoleon III was emperor of France"; "cats, dogs, etc. are pets"'),
        _synset(103, 'no examples at all'),
        _synset(104, 'curly; "She said `hello\' to Tom\'s dogs"'),
    ]
    for name in ("data.noun", "data.verb", "data.adj", "data.adv"):
        (tmp_path / name).write_text("".join(lines) if name == "data.noun" else _LICENCE)
    monkeypatch.setenv("SHRINKML_WORDNET_DIR", str(tmp_path))
    return tmp_path


def test_examples_are_read_normalised_filtered_and_split_into_disjoint_pools(fake_wordnet) -> None:
    assert wordnet_available()
    train, evaluation = natural_sentences("train", seed=0), natural_sentences("eval", seed=0)
    both = set(train) | set(evaluation)
    assert not set(train) & set(evaluation)
    # 60 distinct sentences (numbers spelled out, duplicates once) + the apostrophe one;
    # "two words" is too short; a lone "b", "bbc" (no vowel), "iii" and "etc" are not read
    # as written.
    assert len(both) == len(train) + len(evaluation) == 61
    assert "we saw forty two cats" in both
    assert "she said hello to tom's dogs" in both
    assert 5 <= len(evaluation) <= 25  # about one in five
    assert natural_sentences("eval", seed=0) == evaluation
    assert natural_sentences("train", seed=1) != train and set(natural_sentences("train", seed=1)) == set(train)
    short = natural_sentences("train", 0, min_words=3, max_words=4)  # "we saw twelve cats"
    assert short and len(short) < len(train) and all(len(s.split()) <= 4 for s in short)
    fingerprint = wordnet_fingerprint()
    (fake_wordnet / "data.adv").write_text(_LICENCE + _synset(7, 'new; "a brand new example sentence"'))
    from asr.corpus.natural import _fingerprint

    _fingerprint.cache_clear()
    assert wordnet_fingerprint() != fingerprint


def test_bad_requests_and_missing_wordnet_say_what_to_do(tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"unknown natural-sentence pool 'test'; accepted: train, eval"):
        natural_sentences("test", seed=0)
    monkeypatch.setenv("SHRINKML_WORDNET_DIR", str(tmp_path))
    assert not wordnet_available() and wordnet_fingerprint() == "missing"
    with pytest.raises(FileNotFoundError, match=r"apt-get install wordnet-base"):
        natural_sentences("eval", seed=0)
    with pytest.raises(FileNotFoundError, match=r"'natural' takes its sentences from WordNet.*wordnet-base"):
        ensure_corpus(CorpusConfig.tiny(), tmp_path / "cache", splits=("natural",))
    assert not (tmp_path / "cache").exists() or os.listdir(tmp_path / "cache") == []


needs_planning = pytest.mark.skipif(
    importlib.util.find_spec("espeakng_loader") is None or importlib.util.find_spec("wordfreq") is None,
    reason="planning a corpus needs espeakng_loader and wordfreq (the 'corpus' extra)",
)


@needs_planning
def test_training_sentences_from_wordnet_move_nothing_else(fake_wordnet, tmp_path, monkeypatch) -> None:
    from asr.corpus.build import _plan

    plain = _plan(CorpusConfig.tiny())
    mixed = _plan(replace(CorpusConfig.tiny(), natural_train_fraction=0.5))
    assert [(i.id, i.voice, i.augmented, i.seed) for i in plain] == [
        (i.id, i.voice, i.augmented, i.seed) for i in mixed
    ]
    replaced = {a.id for a, b in zip(plain, mixed) if a.text != b.text}
    assert replaced and all(uid.startswith("train") for uid in replaced)
    taken = {i.text for i in mixed if i.id in replaced}
    assert taken <= set(natural_sentences("train", 0))
    natural = [i for i in mixed if i.split == "natural"]
    assert len(natural) == 4 and {i.text for i in natural} <= set(natural_sentences("eval", 0))
    # Asking for more evaluation sentences than the pool has, or WordNet missing, is refused.
    with pytest.raises(ValueError, match=r"natural_utterances=500 asks for more than the \d+ WordNet"):
        _plan(replace(CorpusConfig.tiny(), natural_utterances=500))
    with pytest.raises(ValueError, match=r"needs more WordNet sentences than the \d+ of its training pool"):
        _plan(replace(CorpusConfig.tiny(), natural_train_fraction=1.0, train_utterances=400))
    monkeypatch.setenv("SHRINKML_WORDNET_DIR", str(tmp_path / "none"))
    def described(items):
        return [(i.id, i.text, i.voice, i.augmented, i.seed) for i in items if i.split != "natural"]

    assert described(_plan(CorpusConfig.tiny())) == described(plain)  # nothing else moves
    with pytest.raises(FileNotFoundError, match=r"natural_train_fraction=0.5 takes training sentences"):
        _plan(replace(CorpusConfig.tiny(), natural_train_fraction=0.5))


def test_no_evaluation_split_follows_the_natural_splits() -> None:
    # Without WordNet the natural items leave the plan and move the task boundaries (so
    # espeak's state) of what follows them: evaluation audio must not depend on that.
    from asr.corpus.config import NATURAL_SPLITS, SPLITS, TRAINING_SPLITS

    after = SPLITS[max(SPLITS.index(split) for split in NATURAL_SPLITS) + 1 :]
    assert set(after) <= set(TRAINING_SPLITS)


def test_without_wordnet_the_split_is_skipped_and_a_made_one_still_served(tmp_path, monkeypatch, caplog) -> None:
    from asr.corpus.build import _makeable, corpus_key

    monkeypatch.setenv("SHRINKML_WORDNET_DIR", str(tmp_path / "none"))
    assert _makeable(["dev", "natural"], named=False) == ["dev"]
    assert "WordNet is not installed: skipping natural (install WordNet's database" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"'natural' takes its sentences from WordNet"):
        ensure_corpus(CorpusConfig.tiny(), tmp_path, splits=("dev", "natural"))
    made = tmp_path / corpus_key(CorpusConfig.tiny()) / "natural.jsonl"  # made elsewhere, copied here
    made.parent.mkdir()
    made.write_text("")
    assert ensure_corpus(CorpusConfig.tiny(), tmp_path, splits=("natural",)).manifest("natural") == made


def test_the_key_covers_wordnet_only_when_training_reads_it(fake_wordnet) -> None:
    from asr.corpus.build import corpus_key

    plain, mixed = CorpusConfig.tiny(), replace(CorpusConfig.tiny(), natural_train_fraction=0.5)
    before = corpus_key(plain), corpus_key(mixed)
    (fake_wordnet / "data.adv").write_text(_LICENCE + _synset(7, 'new; "a brand new example sentence"'))
    from asr.corpus.natural import _fingerprint

    _fingerprint.cache_clear()
    assert corpus_key(plain) == before[0] and corpus_key(mixed) != before[1]
