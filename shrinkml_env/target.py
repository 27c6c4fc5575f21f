"""The compression-target API: what the environment compresses and how it is scored.

A target bundles a trained ``nn.Module``, the ordered paths of its compressible layers
(``nn.LSTM``, ``nn.LSTMCell``, optionally ``nn.Linear``) and an ``evaluate(model) -> error``
function (lower is better; WER for speech). Wrap your own model with :class:`CompressionTarget`;
:func:`toy_target` builds a tiny one in milliseconds for tests and examples, and
``asr.target.default_target()`` is the shipped speech recogniser.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["CompressionTarget", "ToyModel", "resolve_target", "toy_error", "toy_target"]

_COMPRESSIBLE = (nn.LSTM, nn.LSTMCell, nn.Linear)


@dataclass
class CompressionTarget:
    """A model to compress and the function that scores it.

    Attributes:
        model: the trained model; never modified (compressed copies are scored instead).
        layers: module paths of the compressible layers, in the order an episode visits them.
        evaluate: ``evaluate(model) -> error``; must be deterministic for a given model.
        name: a short label for records and reports.
        data_fingerprint: identifies the evaluation data, so cached errors are only reused
            on the same data.
        roles: optional layer path → role (``"encoder"``, ``"decoder"``…); shown to the agent.
        calibrate: optional ``calibrate(model)`` that runs ``model`` over calibration data
            (never the evaluation or test data), for activation-aware factorisation
            (``factorisation="whitened"``); None: only ``"plain"`` is available.
        calibration_fingerprint: identifies the calibration data, so cached errors of
            whitened factorisations are only reused with the same statistics.
        inference: optional ``inference(model, batch_size)`` that runs ``model`` the way it is
            deployed (for speech: greedy decoding of a few dev utterances at that batch size;
            never test data), timed for latency tables and latency budgets; None: only size
            budgets are available.
        score: the name of what ``evaluate`` measures when it is one of the built-in speech
            scores (``asr.scores.SCORES``), so that a search steered by another score is
            refused rather than mislabelled; None: unnamed (custom targets).
        inference_fingerprint: identifies the inference workload (data and decoder), so a
            latency table is only reused for the same one.
    """

    model: nn.Module
    layers: Sequence[str]
    evaluate: Callable[[nn.Module], float]
    name: str = "custom"
    data_fingerprint: str = "unspecified"
    roles: Mapping[str, str] = field(default_factory=dict)
    calibrate: Callable[[nn.Module], None] | None = None
    calibration_fingerprint: str = "none"
    inference: Callable[[nn.Module, int], None] | None = None
    inference_fingerprint: str = "none"
    score: str | None = None
    _baseline: float | None = field(default=None, init=False, repr=False)
    _fingerprint: str | None = field(default=None, init=False, repr=False)
    _moments: dict | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.layers = list(self.layers)
        if not self.layers:
            raise ValueError("a compression target needs at least one compressible layer; got an empty list")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layer paths must be unique; got {self.layers}")
        for path in self.layers:
            try:
                module = self.model.get_submodule(path)
            except AttributeError as e:
                raise ValueError(f"layer {path!r} is not a submodule of the target model") from e
            if not isinstance(module, _COMPRESSIBLE):
                raise ValueError(
                    f"layer {path!r} is a {type(module).__name__}; compressible layers are "
                    "nn.LSTM, nn.LSTMCell and nn.Linear"
                )
        self.model.eval()

    @property
    def baseline_error(self) -> float:
        """Error of the uncompressed model (evaluated once)."""
        if self._baseline is None:
            self._baseline = self.checked_error(self.model)
        return self._baseline

    def checked_error(self, model: nn.Module) -> float:
        """``evaluate(model)``, refusing NaN, infinite or negative errors."""
        error = float(self.evaluate(model))
        if not math.isfinite(error) or error < 0:
            raise ValueError(
                f"target {self.name!r} evaluate() returned {error}; it must return a finite "
                "error >= 0 (e.g. WER as a fraction)"
            )
        return error

    @property
    def fingerprint(self) -> str:
        """Hash of the layer list and every weight, so caches never mix two models."""
        if self._fingerprint is None:
            digest = hashlib.sha256("|".join(self.layers).encode())
            for key, value in sorted(self.model.state_dict().items()):
                digest.update(key.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


class ToyModel(nn.Module):
    """A small bidirectional-LSTM encoder, an LSTMCell and a classifier: a stand-in recogniser.

    Input ``(B, T, input_size)``; output ``(B, classes)`` logits.
    """

    def __init__(self, input_size: int = 12, hidden_size: int = 24, classes: int = 8) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(
            [
                nn.LSTM(input_size, hidden_size, batch_first=True, bidirectional=True),
                nn.LSTM(2 * hidden_size, hidden_size, batch_first=True, bidirectional=True),
            ]
        )
        self.decoder = nn.LSTMCell(2 * hidden_size, hidden_size)
        self.head = nn.Linear(hidden_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lstm in self.encoder:
            x, _ = lstm(x)
        h = c = x.new_zeros(x.shape[0], self.decoder.hidden_size)
        for t in range(0, x.shape[1], 4):
            h, c = self.decoder(x[:, t], (h, c))
        return self.head(h)


def toy_error(model: nn.Module, data_seed: int, samples: int = 256, noise: float = 0.3) -> Callable[[nn.Module], float]:
    """The toy task's ``evaluate``: misclassification on a noisy draw of random sequences.

    Labels are ``model``'s own standardised predictions on ``samples`` clean sequences drawn
    with ``data_seed``; the error of a candidate is its misclassification rate on a fixed
    noisy copy of them, so the dense model's error is above zero (like a real WER; about
    0.23 at the default noise) and compression raises it. A different ``data_seed`` gives
    held-out data (a "test set") for the same model.
    """
    generator = torch.Generator().manual_seed(data_seed)
    input_size = model.encoder[0].input_size
    clean = torch.randn(samples, 16, input_size, generator=generator)
    noisy = clean + noise * torch.randn(clean.shape, generator=generator)
    with torch.inference_mode():
        logits = model(clean)
    center, scale = logits.mean(dim=0), logits.std(dim=0)
    labels = ((logits - center) / scale).argmax(dim=1)
    return _MisclassificationRate(noisy, labels, center, scale)


def toy_target(seed: int = 0, samples: int = 256, noise: float = 0.3) -> CompressionTarget:
    """A target that evaluates in milliseconds, for tests and examples (see :func:`toy_error`)."""
    torch.manual_seed(seed)
    model = ToyModel().eval()
    return CompressionTarget(
        model=model,
        layers=["encoder.0", "encoder.1", "decoder", "head"],
        evaluate=toy_error(model, seed, samples, noise),
        name=f"toy-{seed}",
        data_fingerprint=f"toy-{seed}-{samples}-{noise}",
        roles={"encoder.0": "encoder", "encoder.1": "encoder", "decoder": "decoder", "head": "output"},
        calibrate=_ToyCalibration(seed + 500_009, model.encoder[0].input_size),
        calibration_fingerprint=f"toy-calibration-{seed + 500_009}",
        inference=_ToyInference(seed + 700_001, model.encoder[0].input_size),
        inference_fingerprint=f"toy-inference-{seed + 700_001}",
    )


class _ToyInference:
    """Runs a model over 16 random sequences, ``batch_size`` at a time (picklable)."""

    def __init__(self, seed: int, input_size: int) -> None:
        self.inputs = torch.randn(16, 16, input_size, generator=torch.Generator().manual_seed(seed))

    def __call__(self, model: nn.Module, batch_size: int) -> None:
        with torch.inference_mode():
            for start in range(0, len(self.inputs), batch_size):
                model(self.inputs[start : start + batch_size])


class _ToyCalibration:
    """Runs a model over 128 clean random sequences of its own seed (picklable)."""

    def __init__(self, seed: int, input_size: int) -> None:
        self.inputs = torch.randn(128, 16, input_size, generator=torch.Generator().manual_seed(seed))

    def __call__(self, model: nn.Module) -> None:
        with torch.inference_mode():
            model(self.inputs)


class _MisclassificationRate:
    """Share of inputs whose standardised predicted class differs from the label (picklable).

    Logits are standardised per class with the clean data's statistics, so that every class
    is predicted (a random model's raw argmax is nearly constant).
    """

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, center: torch.Tensor, scale: torch.Tensor) -> None:
        self.inputs, self.labels, self.center, self.scale = inputs, labels, center, scale

    def __call__(self, model: nn.Module) -> float:
        with torch.inference_mode():
            predicted = ((model(self.inputs) - self.center) / self.scale).argmax(dim=1)
        return float((predicted != self.labels).float().mean())


def resolve_target(
    target: CompressionTarget | str | None, device: str | torch.device = "cpu", score: str = "wer"
) -> CompressionTarget:
    """Turn the env's ``target`` argument into a target object.

    Accepted: a :class:`CompressionTarget`; ``"toy"``; ``None`` or ``"default"`` for the shipped
    speech recogniser and search subset; a path to an ASR checkpoint (``*.pt``). ``score``
    picks the speech targets' error (``asr.scores.SCORES``); a target object or the toy
    target brings its own, so only ``"wer"`` (the default) is accepted with them.
    """
    if score != "wer" and (isinstance(target, CompressionTarget) or target == "toy"):
        what = "the toy target" if target == "toy" else "a CompressionTarget"
        raise ValueError(
            f"score {score!r} applies to the built-in speech targets; {what} brings its own "
            "evaluate(), so put the score there and leave score='wer'"
        )
    if isinstance(target, CompressionTarget):
        return target
    if target == "toy":
        return toy_target()
    if target is None or isinstance(target, str):
        try:
            from asr.target import asr_target, default_target
        except ImportError as e:
            raise ValueError(
                f"target {target!r} needs the speech recogniser package `asr`, which is not "
                "importable; pass a CompressionTarget instead"
            ) from e
        if target in (None, "default"):
            return default_target(device=device, score=score)
        return asr_target(target, device=device, score=score)
    raise TypeError(
        f"target must be a CompressionTarget, 'toy', 'default' or a checkpoint path; got "
        f"{type(target).__name__}"
    )
