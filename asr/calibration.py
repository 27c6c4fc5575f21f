"""Calibration data for activation-aware factorisation of the recogniser.

``factorisation="whitened"`` needs the second moments of every LSTM matrix's inputs on
speech the model is run on (:mod:`shrinkml_env.compression.calibration`). For the ASR
target that is a teacher-forced pass of the dense model over calibration utterances: the
encoder sees their audio and the decoder the reference prefixes, as in training. The
default set is the **last 200 dev utterances**: the search subset is chosen among the
first 600 and the held-out dev pool of the design studies starts at 600, so none of them
overlap; test is never used, and :func:`check_calibration` refuses a set that shares an
utterance with the evaluation data or the test split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from asr.data import prepare_feature_batches
from asr.features import LogMelFrontend
from asr.manifest import Utterance
from asr.text import CharTokenizer

__all__ = ["DEFAULT_CALIBRATION_UTTERANCES", "TeacherForcedCalibration", "check_calibration", "default_calibration"]

DEFAULT_CALIBRATION_UTTERANCES = 200


def default_calibration(count: int = DEFAULT_CALIBRATION_UTTERANCES) -> list[Utterance]:
    """The last ``count`` utterances of the default corpus' dev split."""
    from asr.default import load_split

    dev = load_split("dev")
    if not 0 < count <= len(dev):
        raise ValueError(f"calibration needs between 1 and {len(dev)} dev utterances; got {count}")
    return dev[-count:]


def calibration_fingerprint(utterances: Sequence[Utterance]) -> str:
    digest = hashlib.sha256(b"calibration")
    for u in utterances:
        digest.update(f"{u.id}\t{u.text}\t{u.duration:.3f}\n".encode())
    return digest.hexdigest()[:16]


def check_calibration(calibration: Sequence[Utterance], **forbidden: Sequence[Utterance]) -> None:
    """Refuse calibration data that shares an utterance (same id or audio file) with any of
    the ``forbidden`` sets, named by keyword (``evaluation=…, test=…``).

    Raises:
        ValueError: on an empty calibration set, or naming the first shared utterance and set.
    """
    if not calibration:
        raise ValueError("calibration needs at least one utterance; got none")
    for name, utterances in forbidden.items():
        ids = {u.id for u in utterances}
        paths = {str(u.audio_filepath) for u in utterances}
        for u in calibration:
            if u.id in ids or str(u.audio_filepath) in paths:
                raise ValueError(
                    f"calibration utterance {u.id!r} is also in the {name} data; calibration must "
                    f"come from train or dev utterances that are neither evaluated nor tested"
                )


class TeacherForcedCalibration:
    """``calibrate(model)``: teacher-forced passes over the calibration utterances.

    Features are prepared on the first call (a plain-SVD search never pays for them);
    picklable, so vectorised envs can ship it.
    """

    def __init__(self, utterances: Sequence[Utterance], tokenizer: CharTokenizer) -> None:
        self.utterances = list(utterances)
        self.tokenizer = tokenizer
        self._batches: list | None = None

    def __call__(self, model: nn.Module) -> None:
        if self._batches is None:
            self._batches = prepare_feature_batches(self.utterances, LogMelFrontend(), self.tokenizer)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for b in self._batches:
                    model(b.features.to(device), b.frames.to(device), b.targets.to(device))
        finally:
            model.train(was_training)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_batches": None}
