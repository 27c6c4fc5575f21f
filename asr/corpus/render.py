"""Turn planned utterances into audio files and manifest records (runs in worker processes).

An :class:`Item` is one planned utterance (text, voice, seeds); a :class:`Task` is a list
of them rendered by one fresh worker process (:func:`render`), because libespeak-ng carries
state from one utterance to the next. What each split's audio looks like:

* ``train``, ``train_extra`` and ``train_flite``: the synthesiser's own silence removed, then varied onset
  and offset (none, cut, or up to 0.6 s), half the voices transformed in pitch and
  formants, 60 % augmented (noise, speed, reverberation, band limits), peak level
  log-uniform over 0.03–0.95;
* ``dev``, ``test``, ``unseen``, ``cross_synth``, ``natural``: clean, 0.05–0.3 s of silence
  each side;
* ``trimmed``: clean, no silence at either end, levels as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asr.audio import SAMPLE_RATE, resample, save_audio
from asr.corpus.augment import augment
from asr.corpus.config import TRAINING_SPLITS, CorpusConfig
from asr.corpus.espeak import ESPEAK_SAMPLE_RATE, Voice, synthesize
from asr.corpus.festival import FestivalVoice, synthesize_festival
from asr.corpus.flite import FliteVoice, synthesize_flite
from asr.corpus.variety import (
    close_praat,
    draw_peak,
    draw_placement,
    place_speech,
    transform_voice,
    trim_silence,
)
from asr.manifest import Utterance

__all__ = ["Item", "Task", "record", "render"]


@dataclass(frozen=True)
class Item:
    """One utterance to synthesise (picklable; sent to a worker)."""

    id: str
    split: str
    text: str
    voice: Voice | FestivalVoice | FliteVoice
    held_out: str  # "", "accent", "variant" or "both"
    augmented: bool
    seed: int


@dataclass(frozen=True)
class Task:
    # Split -> folder its audio goes to; items of other splits are spoken and discarded,
    # only to carry espeak's state to the wanted items after them.
    folders: dict[str, str]
    config: CorpusConfig
    items: tuple[Item, ...]


def _speech(item: Item, festival_audio: dict[str, np.ndarray]) -> np.ndarray:
    """The item's speech at :data:`SAMPLE_RATE` without the synthesiser's own silence."""
    if isinstance(item.voice, FestivalVoice):
        speech = festival_audio[item.id]
    elif isinstance(item.voice, FliteVoice):
        speech = synthesize_flite(item.text, item.voice, SAMPLE_RATE)
    else:
        raw = synthesize(item.text, item.voice, seed=item.seed & 0x7FFFFFFF)
        speech = resample(raw.astype(np.float32) / 32768.0, ESPEAK_SAMPLE_RATE, SAMPLE_RATE)
        speech = speech.numpy()
    return trim_silence(speech, SAMPLE_RATE)


def _shape(item: Item, speech: np.ndarray, config: CorpusConfig) -> tuple[np.ndarray, dict]:
    """Place, transform, augment and level one utterance; returns audio and what was done."""
    rng = np.random.default_rng(item.seed)
    variety = config.variety
    done: dict[str, Any] = {}
    if item.split in TRAINING_SPLITS:
        if rng.random() < variety.voice_fraction:
            speech, done["voice_transform"] = transform_voice(speech, SAMPLE_RATE, variety, rng)
        before, after = draw_placement(variety, rng)
        peak_range = variety.peak_range
    elif item.split == "trimmed":
        before, after, peak_range = 0.0, 0.0, variety.peak_range
    else:
        before, after = (float(rng.uniform(*config.padding_seconds)) for _ in range(2))
        peak_range = config.peak_range
    waveform = place_speech(speech, before, after, SAMPLE_RATE)
    done["onset"], done["offset"] = round(before, 3), round(after, 3)
    if item.augmented:
        waveform, done["augment"] = augment(waveform, config.augmentation, rng, SAMPLE_RATE)
    peak = float(np.max(np.abs(waveform))) or 1.0
    waveform = waveform * (draw_peak(peak_range, rng) / peak)
    return waveform, done


def render(task: Task) -> list[tuple[str, float, dict]]:
    """Synthesise, shape and save a task's utterances; returns ``(id, seconds, details)``."""
    import torch

    torch.set_num_threads(1)  # one worker per core; more threads only contend
    spoken = [i for i in task.items if isinstance(i.voice, FestivalVoice) and i.split in task.folders]
    festival_audio = dict(
        zip(
            (i.id for i in spoken),
            synthesize_festival([i.text for i in spoken], [i.voice for i in spoken], SAMPLE_RATE)
            if spoken
            else [],
        )
    )
    results = []
    try:
        for item in task.items:
            if item.split not in task.folders:
                if isinstance(item.voice, Voice):  # spoken only for espeak's state
                    synthesize(item.text, item.voice, seed=item.seed & 0x7FFFFFFF)
                continue
            waveform, details = _shape(item, _speech(item, festival_audio), task.config)
            path = Path(task.folders[item.split]) / f"{item.id}.{task.config.audio_format}"
            save_audio(path, waveform)
            results.append((item.id, waveform.shape[0] / SAMPLE_RATE, details))
    finally:
        close_praat()  # its worker is about to exit: reap the helper rather than orphan it
    return results


def record(item: Item, root: Path, audio_format: str, duration: float, details: dict) -> Utterance:
    """The manifest line of a rendered item."""
    voice = item.voice
    if isinstance(voice, (FestivalVoice, FliteVoice)):
        described: dict[str, Any] = {
            "synthesiser": "festival" if isinstance(voice, FestivalVoice) else "flite",
            "voice": voice.voice,
            "stretch": voice.stretch,
            "pitch_mean_hz": voice.pitch_mean_hz,
        }
    else:
        described = {
            "accent": voice.accent,
            "variant": voice.variant,
            "rate": voice.rate,
            "pitch": voice.pitch,
        }
    extra: dict[str, Any] = {
        "words": len(item.text.split()),
        "speaker": voice.name,
        "voice": described,
        "onset": details["onset"],
        "offset": details["offset"],
    }
    if item.split in TRAINING_SPLITS:
        extra["augment"] = details.get("augment", "none")
        extra["voice_transform"] = details.get("voice_transform", "none")
    if item.held_out:
        extra["held_out"] = item.held_out
    path = root / item.split / f"{item.id}.{audio_format}"
    return Utterance(item.id, str(path), item.text, duration, extra)
