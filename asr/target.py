"""The speech recogniser as a compression target for ``ShrinkML-v0``.

The target's error is greedy-decoding WER on an evaluation set (the shipped search subset by
default). Features are computed once when the target is built; each evaluation only runs the
model, batched.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from asr.checkpoint import load_checkpoint
from asr.data import FeatureBatch, prepare_feature_batches
from asr.default import default_checkpoint, load_split
from asr.evaluate import evaluate_batches
from asr.features import LogMelFrontend
from asr.manifest import Utterance
from asr.model import ASRModel
from asr.text import CharTokenizer
from shrinkml_env.target import CompressionTarget

__all__ = ["asr_target", "default_target"]


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
) -> CompressionTarget:
    """A target for an ASR checkpoint, scored by WER on ``utterances`` (default: search subset)."""
    model, tokenizer, _ = load_checkpoint(checkpoint, device=device)
    utterances = list(utterances) if utterances is not None else load_split("search")
    if not utterances:
        raise ValueError("an ASR target needs at least one evaluation utterance; got none")
    batches = prepare_feature_batches(utterances, LogMelFrontend(), tokenizer)
    return CompressionTarget(
        model=model,
        layers=model.compressible_layers(),
        evaluate=_WERScorer(tokenizer, batches),
        name=name or Path(checkpoint).stem,
        data_fingerprint=_data_fingerprint(utterances),
        roles={p: p.split(".")[0] for p in model.compressible_layers()},
    )


def default_target(device: str | torch.device = "cpu") -> CompressionTarget:
    """The shipped model scored on the shipped search subset."""
    return asr_target(default_checkpoint(), device=device, name="default")


class _WERScorer:
    """``evaluate(model) -> WER`` over prepared feature batches (picklable, unlike a closure)."""

    def __init__(self, tokenizer: CharTokenizer, batches: Sequence[FeatureBatch]) -> None:
        self.tokenizer = tokenizer
        self.batches = list(batches)

    def __call__(self, model: nn.Module) -> float:
        if not isinstance(model, ASRModel):
            raise TypeError(f"the ASR target scores ASRModel instances; got {type(model).__name__}")
        return evaluate_batches(model, self.tokenizer, self.batches).wer
