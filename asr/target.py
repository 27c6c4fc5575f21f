"""The speech recogniser as a compression target for ``ShrinkML-v0``.

The target's error is a score of :mod:`asr.scores` on an evaluation set (the shipped search
subset by default): greedy-decoding WER unless ``score`` names another. Features (and
reference targets) are computed once when the target is built; each evaluation only runs
the model, batched.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from asr.calibration import (
    TeacherForcedCalibration,
    calibration_fingerprint,
    check_calibration,
    default_calibration,
)
from asr.checkpoint import load_checkpoint
from asr.data import prepare_feature_batches
from asr.decoding import greedy_decode
from asr.default import default_checkpoint, load_split
from asr.features import LogMelFrontend
from asr.manifest import Utterance
from asr.scores import SCORES, make_scorer
from shrinkml_env.target import CompressionTarget

__all__ = ["GreedyInference", "asr_target", "default_target"]

LATENCY_UTTERANCES = 25  # every 8th calibration utterance: a latency workload of about 2 s


class GreedyInference:
    """A latency workload: greedy decoding of fixed utterances, ``batch_size`` at a time.

    Features are computed once per batch size (the frontend is not what compression
    changes, so it is left out of what is timed). Picklable, like the other target hooks.
    """

    def __init__(self, utterances: Sequence[Utterance], tokenizer) -> None:
        if not utterances:
            raise ValueError("a latency workload needs at least one utterance; got none")
        self.utterances, self.tokenizer = list(utterances), tokenizer
        self._batches: dict[int, list] = {}

    @property
    def fingerprint(self) -> str:
        return "greedy-" + _data_fingerprint(self.utterances)

    def __call__(self, model: torch.nn.Module, batch_size: int) -> None:
        if batch_size not in self._batches:
            self._batches[batch_size] = prepare_feature_batches(
                self.utterances, LogMelFrontend(), self.tokenizer, max_batch_seconds=1e9,
                max_batch_size=batch_size,
            )
        device = next(model.parameters()).device
        for batch in self._batches[batch_size]:
            greedy_decode(model, batch.features.to(device), batch.frames.to(device))

    def __getstate__(self) -> dict:
        return {"utterances": self.utterances, "tokenizer": self.tokenizer, "_batches": {}}


def _data_fingerprint(utterances: Sequence[Utterance]) -> str:
    digest = hashlib.sha256()
    for u in utterances:
        digest.update(f"{u.id}\t{u.text}\t{u.duration:.3f}\n".encode())
    return digest.hexdigest()[:16]


def asr_target(
    checkpoint: str | os.PathLike[str],
    utterances: Sequence[Utterance] | None = None,
    *,
    device: str | torch.device = "cpu",
    name: str | None = None,
    score: str = "wer",
    calibration: Sequence[Utterance] | None = None,
) -> CompressionTarget:
    """A target for an ASR checkpoint, scored on ``utterances`` (default: search subset).

    ``score``: one of :data:`asr.scores.SCORES` (default ``"wer"``, greedy decoding). It is
    part of the data fingerprint, so cached errors of two scores never mix.
    ``calibration``: utterances for activation-aware factorisation (never evaluation or test
    data; refused if they share one with ``utterances``); default: with the default search
    subset, the last 200 dev utterances (:mod:`asr.calibration`), otherwise none.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; accepted: {', '.join(SCORES)}")
    model, tokenizer, _ = load_checkpoint(checkpoint, device=device)
    default_data = utterances is None
    utterances = list(utterances) if utterances is not None else load_split("search")
    if not utterances:
        raise ValueError("an ASR target needs at least one evaluation utterance; got none")
    if calibration is None and default_data:
        calibration = default_calibration()
    if calibration is not None:
        calibration = list(calibration)
        check_calibration(calibration, evaluation=utterances)
    batches = prepare_feature_batches(utterances, LogMelFrontend(), tokenizer)
    fingerprint = _data_fingerprint(utterances)
    inference = None if calibration is None else GreedyInference(calibration[::8][:LATENCY_UTTERANCES], tokenizer)
    return CompressionTarget(
        model=model,
        layers=model.compressible_layers(),
        evaluate=make_scorer(score, model, tokenizer, batches),
        name=name or Path(checkpoint).stem,
        # WER keeps the fingerprint it always had, so existing caches stay valid.
        data_fingerprint=fingerprint if score == "wer" else f"{fingerprint}-{score}",
        roles={p: p.split(".")[0] for p in model.compressible_layers()},
        calibrate=None if calibration is None else TeacherForcedCalibration(calibration, tokenizer),
        calibration_fingerprint="none" if calibration is None else calibration_fingerprint(calibration),
        inference=inference,
        inference_fingerprint="none" if inference is None else inference.fingerprint,
        score=score,
    )


def default_target(device: str | torch.device = "cpu", score: str = "wer") -> CompressionTarget:
    """The shipped model scored on the shipped search subset."""
    return asr_target(default_checkpoint(), device=device, name="default", score=score)

