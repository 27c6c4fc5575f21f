"""Batches of audio and transcripts for training and decoding.

Shape legend: ``B`` batch size; ``S`` audio samples; ``T`` feature frames; ``F`` mel bins;
``U`` target tokens.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from asr.audio import load_audio
from asr.features import LogMelFrontend, normalise_utterances
from asr.manifest import Utterance
from asr.text import CharTokenizer

__all__ = [
    "Batch",
    "FeatureBatch",
    "duration_batches",
    "load_batch",
    "prepare_feature_batches",
]


@dataclass
class Batch:
    """Padded audio and targets.

    Attributes:
        waveforms: ``(B, S)`` zero-padded audio.
        samples: ``(B,)`` valid samples.
        targets: ``(B, U)`` ``<sos> tokens <eos>``, padded with ``<blank>`` (id 0).
        target_lengths: ``(B,)`` tokens per row without ``<sos>``/``<eos>``.
        ids: utterance ids.
        texts: raw transcripts.
    """

    waveforms: torch.Tensor
    samples: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    ids: list[str]
    texts: list[str]


@dataclass
class FeatureBatch:
    """Normalised features ready for the model: ``features (B, T, F)``, ``frames (B,)``;
    ``targets (B, U)`` as in :class:`Batch` (``<sos> tokens <eos>``, blank-padded) for scores
    that feed the reference to the decoder."""

    features: torch.Tensor
    frames: torch.Tensor
    ids: list[str]
    texts: list[str]
    targets: torch.Tensor | None = None


def load_batch(
    utterances: Sequence[Utterance],
    tokenizer: CharTokenizer,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Batch:
    """Load and pad the audio and targets of ``utterances``; ``transform`` edits each waveform."""
    waves = []
    for utt in utterances:
        wave = load_audio(utt.audio_filepath)
        waves.append(transform(wave) if transform is not None else wave)
    token_ids = [tokenizer.encode(u.text) for u in utterances]
    samples = torch.tensor([w.numel() for w in waves], dtype=torch.long)
    waveforms = torch.zeros(len(waves), int(samples.max()))
    for i, w in enumerate(waves):
        waveforms[i, : w.numel()] = w
    width = max(len(t) for t in token_ids) + 2
    targets = torch.zeros(len(waves), width, dtype=torch.long)
    for i, t in enumerate(token_ids):
        targets[i, : len(t) + 2] = torch.tensor([tokenizer.sos_id, *t, tokenizer.eos_id])
    return Batch(
        waveforms=waveforms,
        samples=samples,
        targets=targets,
        target_lengths=torch.tensor([len(t) for t in token_ids], dtype=torch.long),
        ids=[u.id for u in utterances],
        texts=[u.text for u in utterances],
    )


def duration_batches(
    durations: Sequence[float],
    max_batch_seconds: float,
    max_batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
) -> list[list[int]]:
    """Group indices into batches of similar duration.

    Indices are sorted by duration (ties broken by a seeded shuffle when ``shuffle``), cut
    into batches whose padded length × size stays within ``max_batch_seconds`` and whose size
    is at most ``max_batch_size``; with ``shuffle`` the batch order is shuffled too.
    """
    if max_batch_seconds <= 0 or max_batch_size < 1:
        raise ValueError(
            f"max_batch_seconds must be > 0 and max_batch_size >= 1; got {max_batch_seconds}, "
            f"{max_batch_size}"
        )
    rng = random.Random(seed)
    order = list(range(len(durations)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: durations[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(durations[i], *(durations[j] for j in current[-1:])) if current else durations[i]
        if current and (
            len(current) >= max_batch_size or longest * (len(current) + 1) > max_batch_seconds
        ):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def prepare_feature_batches(
    utterances: Sequence[Utterance],
    frontend: LogMelFrontend,
    tokenizer: CharTokenizer,
    *,
    max_batch_seconds: float = 240.0,
    max_batch_size: int = 64,
) -> list[FeatureBatch]:
    """Compute normalised features once, in duration-sorted batches, for repeated decoding."""
    batches = []
    durations = [u.duration for u in utterances]
    device = frontend.window.device  # features land where the frontend lives (CPU or GPU)
    for indices in duration_batches(durations, max_batch_seconds, max_batch_size, shuffle=False):
        batch = load_batch([utterances[i] for i in indices], tokenizer)
        with torch.inference_mode():
            features, frames = frontend(batch.waveforms.to(device), batch.samples.to(device))
            features = normalise_utterances(features, frames)
        batches.append(FeatureBatch(features, frames, batch.ids, batch.texts, batch.targets))
    return batches


def iterate_epochs(batches_for_epoch: Callable[[int], list[list[int]]], start_epoch: int) -> Iterator[tuple[int, int, list[int]]]:
    """Yield ``(epoch, index_in_epoch, batch)`` forever, from ``start_epoch`` on."""
    epoch = start_epoch
    while True:
        for k, batch in enumerate(batches_for_epoch(epoch)):
            yield epoch, k, batch
        epoch += 1
