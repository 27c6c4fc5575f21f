"""Generate the synthetic corpus into a cache folder, once per split: :func:`ensure_corpus`.

Layout of a corpus (``<cache>/<key>``)::

    corpus.json               config, library versions and statistics of the finished splits
    train.jsonl dev.jsonl test.jsonl unseen.jsonl    manifests (see asr.manifest)
    train/train-000000.flac … 16 kHz mono 16-bit audio
    .train.lock …             one lock file per split, held while the split is generated

The key names the generator version and a hash of the config and library versions, so a
changed config never reuses an old corpus. Splits are generated on demand, each on its
own: its audio is written into a hidden temporary folder, renamed into place when
complete, and its manifest is written last, so a split counts as finished exactly when its
manifest exists. A split that a run left unfinished is cleared and redone by the next run
that needs it; a lock per split keeps two processes from generating the same one.

Reproducibility: libespeak-ng carries state from one utterance to the next inside a
process, so each fixed-size task of utterances is synthesised by a fresh worker process
(``maxtasksperchild=1``, forked from a clean fork server). The audio therefore depends on
the config and library versions only, not on the number of workers or their scheduling.
Sentences, voices and tasks are always planned for the whole corpus; a task that spans two
splits speaks the utterances of an ungenerated split before a wanted one (discarding them),
so a split has the same bytes whichever splits are generated with it. As with any
multiprocessing code that does not fork, a script that calls :func:`ensure_corpus` at top
level must do so under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr.audio import SAMPLE_RATE, resample, save_audio
from asr.corpus.augment import AugmentConfig, augment
from asr.corpus.config import SPLITS, CorpusConfig
from asr.corpus.espeak import ESPEAK_SAMPLE_RATE, Voice, english_accents, synthesize, voice_variants
from asr.corpus.sentences import SentenceGenerator
from asr.manifest import Utterance

__all__ = ["CorpusPaths", "default_cache_dir", "ensure_corpus"]

logger = logging.getLogger(__name__)

# Bump when the generator's output changes for the same config.
GENERATOR_VERSION = "v1"
# Utterances per worker task. Part of the output's definition (espeak state runs through a
# task), so changing it changes the audio: keep it fixed, and bump GENERATOR_VERSION if not.
_TASK_SIZE = 200
_INFO_FILE = "corpus.json"


@dataclass(frozen=True)
class CorpusPaths:
    """Where a generated corpus lies."""

    root: Path

    def manifest(self, split: str) -> Path:
        """The manifest of ``split`` (one of ``"train"``, ``"dev"``, ``"test"``, ``"unseen"``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
        return self.root / f"{split}.jsonl"

    @property
    def manifests(self) -> dict[str, Path]:
        """Manifest path of every split."""
        return {split: self.manifest(split) for split in SPLITS}

    @property
    def train(self) -> Path:
        return self.manifest("train")

    @property
    def dev(self) -> Path:
        return self.manifest("dev")

    @property
    def test(self) -> Path:
        return self.manifest("test")

    @property
    def unseen(self) -> Path:
        return self.manifest("unseen")

    def info(self) -> dict[str, Any]:
        """The corpus's ``corpus.json``: config, versions, sizes and generation time."""
        return json.loads((self.root / _INFO_FILE).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class _Item:
    """One utterance to synthesise (picklable; sent to a worker)."""

    id: str
    split: str
    text: str
    voice: Voice
    held_out: str  # "", "accent", "variant" or "both"
    augmented: bool
    seed: int


@dataclass(frozen=True)
class _Task:
    # Split -> folder its audio goes to; items of other splits are spoken and discarded,
    # only to carry espeak's state to the wanted items after them.
    folders: Mapping[str, str]
    audio_format: str
    padding_seconds: tuple[float, float]
    peak_range: tuple[float, float]
    augmentation: AugmentConfig
    items: tuple[_Item, ...]


def default_cache_dir() -> Path:
    """``$SHRINKML_CACHE/corpus`` if the variable is set, else ``~/.cache/shrinkml/corpus``."""
    base = os.environ.get("SHRINKML_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "shrinkml") / "corpus"


def _library_versions() -> dict[str, str]:
    versions = {"generator": GENERATOR_VERSION}
    for package in ("espeakng-loader", "wordfreq"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "missing"
    return versions


def corpus_key(config: CorpusConfig) -> str:
    """Folder name of the corpus ``config`` describes (generator version + content hash)."""
    blob = json.dumps({"config": asdict(config), "versions": _library_versions()}, sort_keys=True)
    return f"{GENERATOR_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _check_voices(config: CorpusConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Training accents and variants; raises if a held-out name is unknown or nothing is left."""
    accents, variants = english_accents(), voice_variants()
    for kind, held, offered in (
        ("unseen_accents", config.unseen_accents, accents),
        ("unseen_variants", config.unseen_variants, variants),
    ):
        unknown = sorted(set(held) - set(offered))
        if unknown:
            raise ValueError(f"{kind} names {unknown}, which espeak-ng lacks; it offers {offered}")
    train_accents = tuple(a for a in accents if a not in config.unseen_accents)
    train_variants = tuple(v for v in variants if v not in config.unseen_variants)
    if not train_accents or not train_variants:
        raise ValueError(
            f"holding out {config.unseen_accents} and {config.unseen_variants} leaves no training "
            f"voice; espeak-ng offers accents {accents}"
        )
    return train_accents, train_variants


def _plan(config: CorpusConfig) -> list[_Item]:
    """Every utterance of every split, with text, voice and seeds; deterministic."""
    train_accents, train_variants = _check_voices(config)
    sentences = SentenceGenerator(
        seed=config.seed,
        vocabulary_size=config.vocabulary_size,
        min_words=config.min_words,
        max_words=config.max_words,
        free_sequence_fraction=config.free_sequence_fraction,
        frequency_exponent=config.frequency_exponent,
    ).distinct_sentences()
    rng = np.random.default_rng([config.seed, 1])
    items: list[_Item] = []
    for split_index, split in enumerate(SPLITS):
        for i in range(config.utterances(split)):
            held_out = ""
            accents, variants = train_accents, train_variants
            if split == "unseen":
                # Cycle through the kinds of novelty that the config holds out.
                kinds = ["accent"] * bool(config.unseen_accents) + ["variant"] * bool(
                    config.unseen_variants
                )
                kinds += ["both"] * (len(kinds) == 2)
                held_out = kinds[i % len(kinds)]
                if held_out in ("accent", "both"):
                    accents = config.unseen_accents
                if held_out in ("variant", "both"):
                    variants = config.unseen_variants
            voice = Voice(
                accent=accents[int(rng.integers(len(accents)))],
                variant=variants[int(rng.integers(len(variants)))],
                rate=int(rng.integers(config.rate_range[0], config.rate_range[1] + 1)),
                pitch=int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1)),
            )
            augmented = split == "train" and rng.random() < config.augmentation.fraction
            seed = int(np.random.SeedSequence([config.seed, split_index, i]).generate_state(1)[0])
            items.append(
                _Item(f"{split}-{i:06d}", split, next(sentences), voice, held_out, augmented, seed)
            )
    return items


def _render(task: _Task) -> list[tuple[str, float, str]]:
    """Synthesise, augment and save a task's utterances (runs in a worker process)."""
    import torch

    torch.set_num_threads(1)  # one worker per core; more threads only contend
    results = []
    for item in task.items:
        raw = synthesize(item.text, item.voice, seed=item.seed & 0x7FFFFFFF)
        if item.split not in task.folders:
            continue
        rng = np.random.default_rng(item.seed)
        speech = resample(raw.astype(np.float32) / 32768.0, ESPEAK_SAMPLE_RATE, SAMPLE_RATE).numpy()
        before, after = (int(rng.uniform(*task.padding_seconds) * SAMPLE_RATE) for _ in range(2))
        waveform = np.pad(speech, (before, after))
        description = ""
        if item.augmented:
            waveform, description = augment(waveform, task.augmentation, rng, SAMPLE_RATE)
        peak = float(np.max(np.abs(waveform))) or 1.0
        waveform = waveform * (rng.uniform(*task.peak_range) / peak)
        save_audio(Path(task.folders[item.split]) / f"{item.id}.{task.audio_format}", waveform)
        results.append((item.id, waveform.shape[0] / SAMPLE_RATE, description))
    return results


def _record(
    item: _Item, root: Path, audio_format: str, duration: float, description: str
) -> Utterance:
    voice = item.voice
    extra: dict[str, Any] = {
        "words": len(item.text.split()),
        "speaker": voice.name,
        "voice": {
            "accent": voice.accent,
            "variant": voice.variant,
            "rate": voice.rate,
            "pitch": voice.pitch,
        },
    }
    if item.split == "train":
        extra["augment"] = description or "none"
    if item.held_out:
        extra["held_out"] = item.held_out
    path = root / item.split / f"{item.id}.{audio_format}"
    return Utterance(item.id, str(path), item.text, duration, extra)


#TAIL
