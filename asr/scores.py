"""Ways to score a compressed recogniser on a fixed set of utterances (lower is better).

A search compares hundreds of configurations of one size whose word error rates differ by a
point or two, so the score it steers by must rank them the way a large held-out set would,
at a few seconds per evaluation. :data:`SCORES` names the candidates:

* ``wer``: greedy-decoding word error rate (the default, and what every result reports).
* ``cer``: greedy-decoding character error rate, from the same transcripts: more error
  events per utterance, so less sampling noise on a small subset.
* ``loss``: teacher-forced cross-entropy of the reference transcripts, per token, under the
  attention decoder. No autoregressive decoding: a prefix of the reference is fed, so one
  early mistake cannot derail the rest of an utterance, and every token contributes a
  graded number instead of a 0/1 error.
* ``distill``: teacher-forced cross-entropy against the *dense* model's output
  distribution along the reference prefixes (``H(p_dense) + KL(p_dense || p)``), i.e. how
  far compression moved the model, per token. Its baseline (the dense model) is the dense
  model's own entropy, so relative-error rewards stay defined.

Which one a search should use is measured, not assumed: ``benchmarks/bench_scores.py``
ranks random configurations of one size by each score and compares the ranking with
greedy WER on held-out dev utterances.

Every scorer is a picklable callable ``scorer(model) -> float`` over batches prepared once
(features and targets), so vectorised envs can ship it to worker processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from asr.data import FeatureBatch
from asr.evaluate import evaluate_batches
from asr.model import ASRModel
from asr.text import CharTokenizer

__all__ = ["SCORES", "make_scorer", "teacher_forced_log_probs"]

SCORES = ("wer", "cer", "loss", "distill")


def make_scorer(
    score: str, model: ASRModel, tokenizer: CharTokenizer, batches: Sequence[FeatureBatch]
):
    """The scorer named ``score`` over ``batches``; ``model`` is the dense model (``distill``
    stores its output distribution once, here).

    Raises:
        ValueError: for an unknown score name, or batches prepared without targets.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; accepted: {', '.join(SCORES)}")
    if score == "wer":
        return WERScorer(tokenizer, batches)
    if score == "cer":
        return CERScorer(tokenizer, batches)
    if any(b.targets is None for b in batches):
        raise ValueError(
            f"score {score!r} needs reference token targets in every batch; prepare them with "
            "asr.data.prepare_feature_batches"
        )
    if score == "loss":
        return LossScorer(batches)
    with torch.inference_mode():
        teacher = [teacher_forced_log_probs(model, b).exp() for b in batches]
    return DistillScorer(batches, teacher)


def _check_model(model: nn.Module) -> ASRModel:
    if not isinstance(model, ASRModel):
        raise TypeError(f"ASR scores take ASRModel instances; got {type(model).__name__}")
    return model


class WERScorer:
    """Greedy-decoding WER over prepared batches."""

    def __init__(self, tokenizer: CharTokenizer, batches: Sequence[FeatureBatch]) -> None:
        self.tokenizer = tokenizer
        self.batches = list(batches)

    def __call__(self, model: nn.Module) -> float:
        return evaluate_batches(_check_model(model), self.tokenizer, self.batches).wer


class CERScorer(WERScorer):
    """Greedy-decoding CER over prepared batches."""

    def __call__(self, model: nn.Module) -> float:
        return evaluate_batches(_check_model(model), self.tokenizer, self.batches).cer


def teacher_forced_log_probs(model: ASRModel, batch: FeatureBatch) -> torch.Tensor:
    """Log-probabilities ``(B, U-1, V)`` of the next token along the reference prefixes.

    The model must be in eval mode (packed encoder, no dropout), as targets keep it.
    """
    device = next(model.parameters()).device
    logits, _, _ = model(batch.features.to(device), batch.frames.to(device), batch.targets.to(device))
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def _gold(batch: FeatureBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token ids and the mask of real (non-padding) positions, ``<eos>`` included."""
    gold = batch.targets[:, 1:]
    return gold, gold != CharTokenizer.blank_id


class LossScorer:
    """Mean cross-entropy per reference token (``<eos>`` included), corpus-level."""

    def __init__(self, batches: Sequence[FeatureBatch]) -> None:
        self.batches = list(batches)

    def __call__(self, model: nn.Module) -> float:
        model = _check_model(model)
        total, tokens = 0.0, 0
        with torch.inference_mode():
            for batch in self.batches:
                log_probs = teacher_forced_log_probs(model, batch)
                gold, mask = _gold(batch)
                nll = F.nll_loss(log_probs.transpose(1, 2), gold, reduction="none")
                total += float(nll[mask].double().sum())
                tokens += int(mask.sum())
        return total / max(tokens, 1)


class DistillScorer:
    """Mean cross-entropy per token against the dense model's next-token distribution."""

    def __init__(self, batches: Sequence[FeatureBatch], teacher: Sequence[torch.Tensor]) -> None:
        self.batches = list(batches)
        self.teacher = list(teacher)

    def __call__(self, model: nn.Module) -> float:
        model = _check_model(model)
        total, tokens = 0.0, 0
        with torch.inference_mode():
            for batch, probs in zip(self.batches, self.teacher, strict=True):
                log_probs = teacher_forced_log_probs(model, batch)
                _, mask = _gold(batch)
                cross = -(probs * log_probs).sum(dim=-1)
                total += float(cross[mask].double().sum())
                tokens += int(mask.sum())
        return total / max(tokens, 1)
