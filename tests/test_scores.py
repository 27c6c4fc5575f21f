"""Search-subset scores: teacher-forced loss and distillation score against their definitions."""

from __future__ import annotations

import copy

import pytest
import torch

from asr.data import FeatureBatch
from asr.scores import SCORES, make_scorer
from asr.text import CharTokenizer
from asr.train import joint_loss
from tests.conftest import tiny_model, toy_batch


@pytest.fixture(scope="module")
def batches():
    generator = torch.Generator().manual_seed(3)
    out = []
    for n in (5, 3):
        features, frames, targets, _, texts = toy_batch(n, generator)
        out.append(FeatureBatch(features, frames, [f"u{i}" for i in range(n)], texts, targets))
    return out


def _confident(seed=0):
    """A tiny untrained model made confident (sharp output distributions), so that a change of
    its LSTM weights moves its predictions measurably."""
    model = tiny_model(seed).eval()
    with torch.no_grad():
        model.output.weight.mul_(40.0)
    return model


def _perturbed(model, scale=0.3):
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in other.named_parameters():
            if name.startswith(("encoder", "decoder")):
                p.add_(scale * p.std() * torch.randn(p.shape, generator=generator))
    return other.eval()


def test_loss_is_the_token_mean_cross_entropy_of_the_references(batches):
    model = tiny_model().eval()
    tokenizer = CharTokenizer()
    batch = batches[0]
    expected = sum(
        joint_loss(model, b.features, b.frames, b.targets, torch.ones(len(b.ids), dtype=torch.long), 0.0)[1][
            "attention_loss"
        ]
        * int((b.targets[:, 1:] != 0).sum())
        for b in batches
    ) / sum(int((b.targets[:, 1:] != 0).sum()) for b in batches)
    with torch.no_grad():
        assert make_scorer("loss", model, tokenizer, [batch])(model) == pytest.approx(
            joint_loss(model, batch.features, batch.frames, batch.targets, torch.ones(5, dtype=torch.long), 0.0)[1][
                "attention_loss"
            ],
            rel=1e-5,
        )
        assert make_scorer("loss", model, tokenizer, batches)(model) == pytest.approx(expected, rel=1e-5)


def test_distill_is_the_dense_entropy_for_the_dense_model_and_grows_under_compression(batches):
    model = _confident()
    scorer = make_scorer("distill", model, CharTokenizer(), batches)
    with torch.no_grad():
        entropies, tokens = 0.0, 0
        for b in batches:
            logits, _, _ = model(b.features, b.frames, b.targets)
            log_p = torch.log_softmax(logits, dim=-1)
            mask = b.targets[:, 1:] != 0
            entropies += float(-(log_p.exp() * log_p).sum(-1)[mask].sum())
            tokens += int(mask.sum())
    dense = scorer(model)
    assert dense == pytest.approx(entropies / tokens, rel=1e-5)
    assert dense > 0  # a usable baseline for relative-error rewards
    assert scorer(_perturbed(model)) > dense + 1e-3


def test_every_score_is_finite_and_distill_rises_for_a_damaged_model(batches):
    # The tiny model is untrained, so only distill is bound to rise (a cross-entropy against
    # the dense model's distribution is at least that distribution's entropy); the others
    # must be finite and non-negative.
    model = _confident()
    damaged = _perturbed(model, scale=1.0)
    for name in SCORES:
        scorer = make_scorer(name, model, CharTokenizer(), batches)
        value = scorer(damaged)
        assert value >= 0 and value == value
        if name == "distill":
            assert value > scorer(model)


def test_bad_scores_and_batches_are_refused(batches):
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="unknown score 'bleu'; accepted: wer, cer, loss, distill"):
        make_scorer("bleu", model, CharTokenizer(), batches)
    bare = [FeatureBatch(b.features, b.frames, b.ids, b.texts) for b in batches]
    with pytest.raises(ValueError, match="needs reference token targets"):
        make_scorer("loss", model, CharTokenizer(), bare)
    with pytest.raises(TypeError, match="ASRModel"):
        make_scorer("loss", model, CharTokenizer(), batches)(torch.nn.Linear(2, 2))


def test_asr_targets_carry_the_score_in_their_data_fingerprint(tmp_path):
    import json

    import numpy as np
    import soundfile

    from asr.checkpoint import save_checkpoint
    from asr.manifest import read_manifest
    from asr.target import asr_target

    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        path = tmp_path / f"u{i}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(8000 + 1000 * i).astype(np.float32), 16000)
        lines.append(json.dumps({"audio_filepath": str(path), "text": "a b", "duration": 0.5 + 0.0625 * i}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    utterances = read_manifest(tmp_path / "m.jsonl").utterances
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, tiny_model(), CharTokenizer())
    targets = {score: asr_target(checkpoint, utterances, score=score) for score in ("wer", "loss", "distill")}
    assert len({t.data_fingerprint for t in targets.values()}) == 3
    # The two teacher-forced baselines are different numbers (reference loss against the dense
    # model's own entropy), both positive so relative-error rewards stay defined.
    assert targets["loss"].baseline_error > 0 and targets["distill"].baseline_error > 0
    assert targets["distill"].baseline_error != targets["loss"].baseline_error
    with pytest.raises(ValueError, match="unknown score 'bleu'"):
        asr_target(checkpoint, utterances, score="bleu")
