"""Decode a set of utterances and score it."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from asr.data import FeatureBatch
from asr.decoding import BeamConfig, CTCBestPath, beam_search, ctc_greedy, greedy_decode
from asr.joint_decoding import JointConfig, joint_beam_search
from asr.metrics import ErrorRates, error_rates, word_errors
from asr.model import ASRModel
from asr.text import CharTokenizer

__all__ = ["Evaluation", "decode_batches", "evaluate_batches", "on_device"]


@dataclass(frozen=True)
class Evaluation:
    """Scores of one decoding pass; ``seconds`` is decoding wall time (features excluded)."""

    rates: ErrorRates
    seconds: float
    ids: tuple[str, ...]
    references: tuple[str, ...]
    hypotheses: tuple[str, ...]

    @property
    def wer(self) -> float:
        return self.rates.wer

    @property
    def cer(self) -> float:
        return self.rates.cer

    def short_fraction(self) -> float:
        """Share of utterances decoded to fewer than half the reference's words: collapses
        (an empty or cut-off transcript), which a WER average hides among spelling errors."""
        short = sum(len(h.split()) < 0.5 * len(r.split()) for r, h in zip(self.references, self.hypotheses))
        return short / max(len(self.references), 1)

    def utterance_errors(self) -> tuple[list[int], list[int]]:
        """``(word errors, reference words)`` per utterance, in order: what a paired
        comparison of two models on the same utterances needs."""
        pairs = [word_errors(r, h) for r, h in zip(self.references, self.hypotheses, strict=True)]
        return [e for e, _ in pairs], [w for _, w in pairs]


def decode_batches(
    model: ASRModel,
    tokenizer: CharTokenizer,
    batches: Sequence[FeatureBatch],
    decoder: BeamConfig | JointConfig | CTCBestPath | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Transcripts of every utterance in ``batches``, in order.

    Greedy attention decoding unless ``decoder`` is given: a :class:`BeamConfig` for
    attention-only beam search, a :class:`JointConfig` for joint CTC/attention beam search,
    :class:`CTCBestPath` for the CTC head's best path. ``progress(done, total)`` is called
    after each batch, in utterances.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    hypotheses: list[str] = []
    total = sum(len(b.ids) for b in batches)
    try:
        for batch in batches:
            features, frames = batch.features.to(device), batch.frames.to(device)
            if decoder is None:
                ids = greedy_decode(model, features, frames)
            elif isinstance(decoder, CTCBestPath):
                ids = ctc_greedy(model, features, frames)
            elif isinstance(decoder, JointConfig):
                ids = joint_beam_search(model, features, frames, decoder)
            else:
                ids = beam_search(model, features, frames, decoder)
            hypotheses.extend(tokenizer.decode(row) for row in ids)
            if progress is not None:
                progress(len(hypotheses), total)
    finally:
        model.train(was_training)
    return hypotheses


def on_device(model: ASRModel, device: str | torch.device) -> ASRModel:
    """``model`` itself when it already lives on ``device``, else a copy moved there (the given one stays put)."""
    if next(model.parameters()).device == torch.device(device):
        return model
    return copy.deepcopy(model).to(device)


def evaluate_batches(
    model: ASRModel,
    tokenizer: CharTokenizer,
    batches: Sequence[FeatureBatch],
    decoder: BeamConfig | JointConfig | CTCBestPath | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Decode and score; WER/CER as fractions (``decoder`` and ``progress`` as in :func:`decode_batches`)."""
    start = time.perf_counter()
    hypotheses = decode_batches(model, tokenizer, batches, decoder, progress)
    seconds = time.perf_counter() - start
    references = [t for b in batches for t in b.texts]
    return Evaluation(
        rates=error_rates(references, hypotheses),
        seconds=seconds,
        ids=tuple(i for b in batches for i in b.ids),
        references=tuple(references),
        hypotheses=tuple(hypotheses),
    )
